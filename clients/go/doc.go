// Package sessionvalidator is the Go client for SessionValidator, the gRPC
// service that validates express-session `connect.sid` cookies and returns
// the Passport user behind them.
//
// A [Client] holds one gRPC connection with production defaults: a 150 ms
// deadline per call, round_robin load balancing over every address DNS
// returns, retries of UNAVAILABLE and keepalive. It is safe for concurrent use;
// create one per process and [Client.Close] it on shutdown.
//
//	sv, err := sessionvalidator.New("sessionvalidator.internal:50051")
//	if err != nil { ... }
//	defer sv.Close()
//	http.Handle("/", sv.Middleware()(app))
//
// # Forward the Cookie header, do not parse it
//
// express-session reads the raw Cookie header bytes as latin-1, keeps the
// first of duplicate cookies and percent-decodes values. Go's
// [net/http.Request.Cookie] does none of that and silently drops values with
// bytes outside 0x20..0x7E. Every method here therefore sends the whole
// header, byte for byte, and lets the service parse it exactly as Node does.
//
// # Verdicts and errors
//
// Every cookie, however broken, gets a [Result] with a [Verdict]; only
// [Result.Valid] means "this is a live session". An error means the
// validator could not decide (its session store is down, the deadline
// passed, ...): it is never a verdict, and the middleware and interceptors
// here fail closed on it. See [Error] and [ErrStoreUnavailable].
package sessionvalidator
