package app

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// The admin address lifts and adds bans, returns memory to the OS and serves profiles. With
// admin.token_file set, the guard below lets those through only with "Authorization: Bearer <token>";
// with admin.protect_reads, the read endpoints too. /healthz and /readyz are always open, since the
// kubelet's probes carry no token. What is protected is decided by method and path, before the
// endpoints' own mux, so an endpoint added later that changes state (any method but GET and HEAD) is
// protected without anyone remembering to.

// guardLogBurst is how many lines about refused admin requests reach the log a second.
const guardLogBurst = 10

// adminGuard checks the admin API's bearer token and counts every request by endpoint and code.
type adminGuard struct {
	token        func() *string // the token in force; nil = none (a reload may change it)
	protectReads func() bool
	log          zerolog.Logger // rate-limited
	requests     *prometheus.CounterVec
}

func newAdminGuard(a *App) *adminGuard {
	g := &adminGuard{
		token:        a.token.Load,
		protectReads: func() bool { return a.config().Admin.ProtectReads },
		log:          a.log.Sample(&zerolog.BurstSampler{Burst: guardLogBurst, Period: time.Second}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kafkaguard_admin_requests_total",
			Help: "Requests to the admin address by endpoint (method and path, from a fixed list) and HTTP status code; 401 is a missing or wrong token."},
			[]string{"endpoint", "code"}),
	}
	a.reg.MustRegister(g.requests)
	return g
}

// wrap guards next.
func (g *adminGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		endpoint := endpointOf(r)
		rec := &codeRecorder{ResponseWriter: w}
		defer func() { g.requests.WithLabelValues(endpoint, strconv.Itoa(rec.status())).Inc() }()
		if tok := g.token(); tok != nil && g.needsToken(r) {
			if problem := checkBearer(r, *tok); problem != "" {
				// The token is never logged, whatever was sent.
				g.log.Warn().Str("endpoint", endpoint).Str("remote", r.RemoteAddr).Str("problem", problem).
					Msg("admin request refused: " + problem)
				rec.Header().Set("WWW-Authenticate", `Bearer realm="kafkaguard admin"`)
				http.Error(rec, "unauthorized: "+problem+"; send Authorization: Bearer <the token in admin.token_file>",
					http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(rec, r)
	})
}

// needsToken reports whether r needs the token: every method that changes something, anything under
// /debug/, and with protect_reads every read but the probes.
func (g *adminGuard) needsToken(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return true
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/debug/"):
		return true
	case r.URL.Path == "/healthz" || r.URL.Path == "/readyz":
		return false
	}
	return g.protectReads()
}

// checkBearer returns "" when r carries the token, else what is wrong. The comparison takes the same
// time whatever the guess: both sides are hashed first, so not even the token's length leaks.
func checkBearer(r *http.Request, token string) string {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "no Authorization header"
	}
	scheme, got, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "Authorization is not a Bearer token"
	}
	a, b := sha256.Sum256([]byte(strings.TrimSpace(got))), sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return "wrong token"
	}
	return ""
}

// adminEndpoints are the endpoint label's values besides "other": a path never becomes a label
// unless it is one of these, so a scanner probing paths cannot grow the series.
var adminEndpoints = []string{"/", "/bans", "/bans/", "/config", "/metrics", "/healthz", "/readyz", "/lift",
	"/debug/pprof/", "/debug/free-os-memory"}

// endpointOf names r's endpoint for the metric: its method (GET, HEAD, POST, DELETE or OTHER) and its
// path cut to one of adminEndpoints.
func endpointOf(r *http.Request) string {
	m := r.Method
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete:
	default:
		m = "OTHER"
	}
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/debug/pprof/"):
		p = "/debug/pprof/"
	case strings.HasPrefix(p, "/bans/"):
		p = "/bans/"
	default:
		known := false
		for _, e := range adminEndpoints {
			known = known || p == e
		}
		if !known {
			p = "other"
		}
	}
	return m + " " + p
}

// codeRecorder remembers the status code written.
type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeRecorder) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return c.ResponseWriter.Write(p)
}

// Flush lets pprof's and the metrics handler's streaming through.
func (c *codeRecorder) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (pprof's profile extends its deadline).
func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *codeRecorder) status() int {
	if c.code == 0 {
		return http.StatusOK
	}
	return c.code
}
