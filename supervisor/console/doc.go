// Package console serves the control API over TCP together with the web
// console: the listener policy (loopback, or TLS, or plaintext by explicit
// choice), the embedded page, and the event feed over WebSocket. It never
// decides who may do what (package webauth does) and never touches the
// supervisor's state: it forwards to the API handler and subscribes to the
// event bus.
package console
