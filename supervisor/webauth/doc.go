// Package webauth decides who may use the control API over TCP: the admin
// and read-only tokens kept in the state directory, bearer-token and session
// cookie authentication, the read-only rule and the cross-origin check. It
// never serves the API itself and never listens on a socket.
package webauth
