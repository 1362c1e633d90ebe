package config

import "errors"

// Sentinel errors for errors.Is. Every problem Load and Validate report is a
// *KeyError whose Err wraps one of these or a more specific parse error, except
// a file Load cannot read or parse, which wraps ErrFile.
var (
	// ErrUnknownKey marks a YAML or environment key that names no setting.
	// It is always an error: a misspelt key would otherwise leave a limit at its
	// default without a word.
	ErrUnknownKey = errors.New("unknown key")
	// ErrUnknownAPI marks a Kafka API name that kmsg does not know.
	ErrUnknownAPI = errors.New("unknown API name")
	// ErrInvalidSize marks a byte size that does not parse, is negative or overflows.
	ErrInvalidSize = errors.New("invalid size")
	// ErrInvalidRate marks a rate that does not parse.
	ErrInvalidRate = errors.New("invalid rate")
	// ErrInvalid marks a value that parses but is out of range or inconsistent
	// with another setting.
	ErrInvalid = errors.New("invalid value")
	// ErrFile marks a config file that cannot be read or parsed, or
	// environment overrides that cannot be applied: nothing was decoded, so
	// there is nothing to validate either.
	ErrFile = errors.New("config file unusable")
)

// KeyError is one configuration problem, tied to the key that causes it.
type KeyError struct {
	// Key is the dotted path of the setting, with list indexes in brackets,
	// e.g. "limits.max_request_bytes" or "listeners[1].address".
	Key string
	// Source names where the value came from when it was not the YAML file,
	// e.g. the environment variable "KAFKAGUARD_LOG__LEVEL"; empty otherwise.
	Source string
	// Err is the problem itself.
	Err error
}

// Error returns "key: problem", with the environment variable appended when
// the value came from one.
func (e *KeyError) Error() string {
	s := e.Key + ": " + e.Err.Error()
	if e.Source != "" {
		s += " (from " + e.Source + ")"
	}
	return s
}

// Unwrap returns the underlying problem, so errors.Is finds the sentinels.
func (e *KeyError) Unwrap() error { return e.Err }

// invalidf builds an ErrInvalid-wrapping problem with a readable message.
func invalidf(msg string) error {
	return &detailError{sentinel: ErrInvalid, msg: msg}
}

// detailError carries a full message while still matching a sentinel, so
// messages do not repeat the sentinel's text ("invalid value: must be ...").
type detailError struct {
	sentinel error
	msg      string
}

func (e *detailError) Error() string { return e.msg }
func (e *detailError) Unwrap() error { return e.sentinel }

// fileError is a file that cannot be read or parsed: its message, matching ErrFile.
type fileError struct{ err error }

func (e *fileError) Error() string   { return e.err.Error() }
func (e *fileError) Unwrap() []error { return []error{ErrFile, e.err} }
