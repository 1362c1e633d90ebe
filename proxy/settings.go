package proxy

import (
	"errors"
	"math"
	"time"

	"github.com/kafkaguard/kafkaguard/limits"
)

// Settings are the options a running Server takes anew from a config reload: what each frame is judged
// by and how long each wait may last. SetSettings swaps them whole; the data path loads them where it
// reads one (an atomic pointer load), so the next frame on an open connection is judged by the new
// policy, the next wait gets the new timeout, and nothing on the data path ever takes a lock for them.
// A frame already past its header keeps the verdict it got. Everything else in Options is fixed for the
// server's life (the pool is shared by every connection, MaxInflight sizes each connection's queue).
type Settings struct {
	// Policy judges every request header; required. A Policy is immutable, so a new one is built and
	// swapped in.
	Policy *limits.Policy
	// Weights price offences for the Gate.
	Weights Weights

	HeaderTimeout  time.Duration
	FrameTimeout   time.Duration
	IdleTimeout    time.Duration
	DialTimeout    time.Duration
	WriteTimeout   time.Duration
	RequestTimeout time.Duration

	// MaxLocalAnswerBytes is Options.MaxLocalAnswerBytes.
	MaxLocalAnswerBytes int
}

// settingsOf takes the live part of o.
func settingsOf(o Options) *Settings {
	return &Settings{
		Policy:              o.Policy,
		Weights:             o.Weights,
		HeaderTimeout:       o.HeaderTimeout,
		FrameTimeout:        o.FrameTimeout,
		IdleTimeout:         o.IdleTimeout,
		DialTimeout:         o.DialTimeout,
		WriteTimeout:        o.WriteTimeout,
		RequestTimeout:      o.RequestTimeout,
		MaxLocalAnswerBytes: o.MaxLocalAnswerBytes,
	}
}

// check refuses settings the server cannot run with, naming each field, all problems joined.
func (st *Settings) check() error { return errors.Join(st.problems()...) }

// problems lists what is out of range in st, one error per field; Options.validate lists these too,
// so each live field is checked in one place for New and for SetSettings alike.
func (st *Settings) problems() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, invalid(format, args...)) }
	if st.Policy == nil {
		bad("Policy: nil")
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"HeaderTimeout", st.HeaderTimeout},
		{"FrameTimeout", st.FrameTimeout},
		{"IdleTimeout", st.IdleTimeout},
		{"DialTimeout", st.DialTimeout},
		{"WriteTimeout", st.WriteTimeout},
		{"RequestTimeout", st.RequestTimeout},
	} {
		if d.d <= 0 {
			bad("%s %s must be positive", d.name, d.d)
		}
	}
	if st.MaxLocalAnswerBytes <= 0 {
		bad("MaxLocalAnswerBytes %d must be positive", st.MaxLocalAnswerBytes)
	}
	for _, w := range []struct {
		name string
		v    float64
	}{
		{"Weights.Closed", st.Weights.Closed},
		{"Weights.RejectedProduce", st.Weights.RejectedProduce},
	} {
		if !(w.v >= 0) || math.IsInf(w.v, 1) {
			bad("%s %v must be a finite number >= 0", w.name, w.v)
		}
	}
	return errs
}

// SetSettings makes st the settings of every frame read and every wait begun from now on, on open
// connections and new ones alike. Settings out of range are refused (ErrInvalidOptions) and the server
// keeps the ones it has.
func (s *Server) SetSettings(st Settings) error {
	if err := st.check(); err != nil {
		return err
	}
	s.set.Store(&st)
	return nil
}

// live returns the settings in force.
func (s *Server) live() *Settings { return s.set.Load() }
