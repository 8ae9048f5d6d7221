package tomldoc

import (
	"errors"
	"fmt"
	"time"

	"github.com/BurntSushi/toml"
)

// Bounds of a short configuration file written by hand, such as a unit
// file or opsvc.toml. The largest sensible one sets a few dozen keys (a few
// hundred with a large environment), in three or four tables, three levels
// deep (service.environment.NAME). The bounds are far above that, and low
// enough that no document within them takes the decoder more than a
// fraction of a second or a few tens of MiB.
const (
	MaxFileSize   = 256 << 10
	DecodeTimeout = 5 * time.Second
)

// FileLimits returns the Limits of a short configuration file.
func FileLimits() Limits { return Limits{Keys: 4096, Tables: 256, Depth: 8, KeyLen: 1024} }

// What a decode error is about, besides the What of a LimitError.
const (
	Syntax  = "syntax"
	Timeout = "timeout"
)

// Located is one reason a document could not be decoded, with its place.
type Located struct {
	Pos  Pos
	What string // Syntax, Timeout, or the What of a LimitError
	Msg  string
}

// Explain lists the reasons in an error of Decode on src: each limit the
// document goes past, or its syntax error, or the time bound.
func Explain(src string, err error) []Located {
	var pe toml.ParseError
	var te *TimeoutError
	switch {
	case errors.As(err, &pe):
		return []Located{{Pos: ErrorPos(src, pe), What: Syntax, Msg: pe.Message}}
	case errors.As(err, &te):
		return []Located{{Pos: Pos{1, 1}, What: Timeout, Msg: "cannot be parsed: " + te.Error()}}
	}
	var out []Located
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			var le *LimitError
			if errors.As(e, &le) {
				out = append(out, Located{Pos: le.Pos, What: le.What, Msg: le.Error()})
			}
		}
	}
	if len(out) == 0 {
		out = append(out, Located{Pos: Pos{1, 1}, What: Syntax, Msg: err.Error()})
	}
	return out
}

// TypeName names the TOML type of a decoded value, for messages: "a
// string", "an array of tables", "a local date".
func TypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("a %T", v)
}
