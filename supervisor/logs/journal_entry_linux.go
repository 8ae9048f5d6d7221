package logs

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
)

// reservedField reports the fields journalEntry sets from the Line itself; a Line's Fields
// cannot replace them (PRIORITY and SYSLOG_IDENTIFIER can).
func reservedField(name string) bool {
	switch name {
	case "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "OPSVC_UNIT", "OPSVC_STREAM", "OBJECT_PID":
		return true
	}
	return false
}

// journalEntry appends the native-protocol encoding of a line to buf: MESSAGE, PRIORITY
// (stdout 6, stderr 3, daemon 6, unless Fields has a valid PRIORITY), SYSLOG_IDENTIFIER (the
// unit, "opsvc" for daemon lines, unless Fields has one), OPSVC_UNIT, OPSVC_STREAM, OBJECT_PID,
// then the other Fields sorted by name. Fields with invalid names are left out.
func journalEntry(buf []byte, line Line) []byte {
	priority := PriorityInfo
	if line.Stream == StreamStderr {
		priority = PriorityErr
	}
	ident := line.Unit
	if line.Stream == StreamDaemon || ident == "" {
		ident = DaemonIdentifier
	}
	if p, ok := line.Fields["PRIORITY"]; ok && len(p) == 1 && p[0] >= '0' && p[0] <= '7' {
		priority = int(p[0] - '0')
	}
	if id, ok := line.Fields["SYSLOG_IDENTIFIER"]; ok && id != "" {
		ident = id
	}
	buf = appendField(buf, "MESSAGE", line.Text)
	buf = appendField(buf, "PRIORITY", strconv.Itoa(priority))
	buf = appendField(buf, "SYSLOG_IDENTIFIER", ident)
	if line.Unit != "" {
		buf = appendField(buf, "OPSVC_UNIT", line.Unit)
	}
	if line.Stream != "" {
		buf = appendField(buf, "OPSVC_STREAM", line.Stream)
	}
	if line.PID > 0 {
		buf = appendField(buf, "OBJECT_PID", strconv.Itoa(line.PID))
	}
	if len(line.Fields) == 0 {
		return buf
	}
	keys := make([]string, 0, len(line.Fields))
	for k := range line.Fields {
		if ValidFieldName(k) && !reservedField(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		buf = appendField(buf, k, line.Fields[k])
	}
	return buf
}

// appendField encodes KEY=value\n, or, for a value with a newline, KEY\n + its length as a
// little-endian uint64 + the value + \n.
func appendField(buf []byte, key, value string) []byte {
	buf = append(buf, key...)
	if !strings.ContainsRune(value, '\n') {
		buf = append(buf, '=')
		buf = append(buf, value...)
		return append(buf, '\n')
	}
	buf = append(buf, '\n')
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(value)))
	buf = append(buf, value...)
	return append(buf, '\n')
}
