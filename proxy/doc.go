// Package proxy owns kafkaguard's listeners and the traffic through them.
//
// Its files follow the data path (accept -> gate -> request pump -> upstream
// -> response pump): server.go (accept, gate, shutdown), conn.go
// (one connection, its two halves and its teardown), request.go (the
// request pump: size, header, policy), forward.go (a frame to the broker),
// produce.go (an oversized Produce answered locally), chunks.go (pool
// chunks, and evicting slow frames when the pool is spent), inflight.go
// (the queue of requests in flight), response.go (the response pump),
// rewrite.go (responses rewritten), answer.go (local answers in pooled
// chunks); reason.go is the table of close reasons and offences.
// settings.go holds what a config reload changes (the policy, weights and
// timeouts, one atomic pointer the data path loads where it reads a value),
// and routes.go the listeners added and removed while the server runs
// (AddRoute starts one more accept loop, owned like the watcher; RemoveRoute
// drains a route's connections as Shutdown drains them all).
//
// A Server binds one listener per Route. Each accepted connection is judged
// by the optional limits.Gate in the accept goroutine (a refused connection
// costs no goroutine and no upstream dial, and no TLS work), then served by
// one goroutine, which on a TLS listener (Route.TLS) first runs the TLS
// handshake within TLSHandshakeTimeout (tlsconn.go, handshake.go), then the
// request pump: it reads the 4-byte size and the request header,
// asks the limits.Policy, and either forwards the frame through chunks of the
// limits.Pool, answers it locally (an oversized Produce gets
// MESSAGE_TOO_LARGE), or closes the connection. The upstream is dialled when
// the first allowed frame is complete (with a TLS handshake when
// Route.UpstreamTLS is set). TLS sessions are never spliced: conn.spliceable
// is the one rule. A second goroutine, the response
// pump, runs while requests are in flight (and a second after): it relays
// their responses in request order, writes local responses in their turn,
// rewrites broker addresses in Metadata, FindCoordinator and
// DescribeCluster responses, and clamps ApiVersions. One more goroutine per
// Server, the upstream watcher
// (started by Serve), looks once a second at each connection on which
// nothing is in flight, without blocking, and when its broker has closed the
// upstream (an idle timeout, a restart) closes the client's side too
// (upstream_closed), so the client reconnects at once. Shutdown stops
// accepting, lets each connection finish its frame and receive what it is
// owed, and waits for every goroutine it started, the watcher included.
//
//	// Every setting is given: proxy fills in no defaults (cmd/internal/app
//	// builds Options from config.Default() and the file).
//	srv, err := proxy.New(proxy.Options{Routes: routes, Policy: pol, Pool: pool,
//		PoolWait: 5 * time.Second, HeaderTimeout: 10 * time.Second, ..., Logger: log})
//	if err != nil { ... }
//	if err := srv.Listen(); err != nil { ... }
//	go srv.Serve()
//	defer srv.Shutdown(ctx)
package proxy
