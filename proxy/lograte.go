package proxy

import (
	"sync"
	"time"
)

// logLimiter caps how many lines of one kind reach the log, so an attacker
// who opens thousands of bad connections cannot flood it. It is a token bucket
// refilled at perSecond up to burst; lines over the budget are counted, and
// the count rides on the next line that is let through as "suppressed".
type logLimiter struct {
	mu         sync.Mutex
	perSecond  float64
	burst      float64
	tokens     float64
	last       time.Time
	suppressed int
}

func newLogLimiter(perSecond float64, burst int) *logLimiter {
	return &logLimiter{perSecond: perSecond, burst: float64(burst), tokens: float64(burst)}
}

// allow reports whether a line may be written now and how many lines were
// suppressed since the last one that was.
func (l *logLimiter) allow() (ok bool, suppressed int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens += now.Sub(l.last).Seconds() * l.perSecond
		if l.tokens > l.burst {
			l.tokens = l.burst
		}
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	s := l.suppressed
	l.suppressed = 0
	return true, s
}
