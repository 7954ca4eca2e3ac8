package httpedge

import (
	"net/http"
	"strconv"
	"strings"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"
	"google.golang.org/grpc/codes"
)

// Response headers set on every answer of the edge, errors and preflights included.
var safetyHeaders = [][2]string{
	// Any response may carry PHI (a thread, a file); no cache, shared or private, keeps it.
	{"Cache-Control", "no-store"},
	// A browser must never guess a type other than the one declared (a JSON body as HTML).
	{"X-Content-Type-Options", "nosniff"},
	// The edge is only ever served over TLS; two years, as browsers' preload lists ask.
	{"Strict-Transport-Security", "max-age=63072000; includeSubDomains"},
	// The portal's URLs (thread ids in paths) do not leak to wherever a response links.
	{"Referrer-Policy", "no-referrer"},
	// An API response is data, never a page: opened in a browser it runs nothing and cannot be
	// framed.
	{"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
}

// preflightMaxAge is how long a browser may cache a preflight answer, in seconds: two hours,
// the most Chromium honours (Firefox would take a day).
const preflightMaxAge = 7200

// tokenQueryParameter is RFC 6750's URI query form of a bearer token, which the edge refuses.
const tokenQueryParameter = "access_token"

// browserSafety wraps next (the routes) in the safeguards every request passes, outermost
// first: the response headers above, CORS (which answers preflights itself), the refusal of
// requests from origins not on the list, and the refusal of a token in the URL.
func browserSafety(c *corsPolicy, next http.Handler) http.Handler {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && !c.allowed(origin) {
			// rs/cors only withholds its headers, leaving the request to run; a browser would then
			// hide the answer from the page, but the rpc would still have happened. Nothing but
			// a listed portal has a reason to send an Origin here.
			refuse(w, r, http.StatusForbidden, "origin_not_allowed", "origin not allowed")
			return
		}
		if r.URL.Query().Has(tokenQueryParameter) {
			// The token is in the URL already, and so maybe in a proxy's log; the least the edge
			// can do is never use it, never log it, and say where it belongs.
			refuse(w, r, http.StatusBadRequest, "token_in_query", "bearer tokens are accepted only in the Authorization header")
			return
		}
		next.ServeHTTP(w, r)
	})
	withCORS := c.handler.Handler(inner)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for _, kv := range safetyHeaders {
			h.Set(kv[0], kv[1])
		}
		withCORS.ServeHTTP(w, r)
	})
}

// corsPolicy is the CORS answer for an explicit list of origins.
type corsPolicy struct {
	origins map[string]bool
	handler *cors.Cors
}

// newCORS allows exactly origins (an empty list allows none: rs/cors would read an empty
// AllowedOrigins as "*", so the decision is always AllowOriginFunc's). Credentials are allowed,
// and rs/cors only ever says so to an allowed origin, echoing it rather than "*". The headers
// are those Connect and gRPC-Web need (connectrpc.com/cors) plus what the suite uses:
// Authorization for the bearer token, X-Request-Id both ways, Range and the download headers.
func newCORS(origins []string) *corsPolicy {
	p := &corsPolicy{origins: map[string]bool{}}
	for _, o := range origins {
		p.origins[o] = true
	}
	p.handler = cors.New(cors.Options{
		AllowOriginFunc:  p.allowed,
		AllowedMethods:   append(connectcors.AllowedMethods(), http.MethodPut, http.MethodPatch, http.MethodDelete),
		AllowedHeaders:   append(connectcors.AllowedHeaders(), "Authorization", "X-Request-Id", "Range"),
		ExposedHeaders:   append(connectcors.ExposedHeaders(), "X-Request-Id", "Content-Disposition", "Content-Range", "Accept-Ranges"),
		AllowCredentials: true,
		MaxAge:           preflightMaxAge,
	})
	return p
}

func (p *corsPolicy) allowed(origin string) bool { return p.origins[origin] }

// onlySurfacePaths answers 404 at once for an rpc path (/<package.Service>/<Method>, as
// Connect, gRPC-Web and gRPC address a method) that is not on the surface, before any
// transcoding. REST paths pass on: the transcoder knows their routes, and surfaceOnly checks
// the method they resolve to.
func onlySurfacePaths(onSurface func(string) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isRPCPath(r.URL.Path) && !onSurface(r.URL.Path) {
			refuse(w, r, http.StatusNotFound, "not_on_surface", "404 page not found")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isRPCPath(path string) bool {
	service, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return ok && strings.Contains(service, ".") && method != "" && !strings.Contains(method, "/")
}

// surfaceOnly stands between the transcoder and the gRPC server: whatever route a request took,
// it reaches the server only for a method on the surface (the transcoder has turned it into a
// gRPC request for /<package.Service>/<Method> by now). Anything else gets a gRPC NotFound,
// which the transcoder turns into HTTP 404 for REST and Connect clients.
func surfaceOnly(onSurface func(string) bool, grpcServer http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !onSurface(r.URL.Path) {
			if a := answerOf(r); a != nil {
				a.reason = "not_on_surface"
			}
			// A trailers-only gRPC answer: the status travels in the headers.
			h := w.Header()
			h.Set("Content-Type", "application/grpc")
			h.Set("Grpc-Status", strconv.Itoa(int(codes.NotFound)))
			h.Set("Grpc-Message", "no such route")
			w.WriteHeader(http.StatusOK)
			return
		}
		markReached(r)
		grpcServer.ServeHTTP(w, r)
	})
}

// openAPIDocument is the document of the service the edge carries, when there is exactly one
// with a document (a service process serves one securemsg service).
func openAPIDocument(services []string, lookup func(string) ([]byte, bool)) ([]byte, bool) {
	if lookup == nil {
		return nil, false
	}
	var docs [][]byte
	for _, s := range services {
		if doc, ok := lookup(s); ok {
			docs = append(docs, doc)
		}
	}
	if len(docs) != 1 {
		return nil, false
	}
	return docs[0], true
}

func serveDocument(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc) // a client that went away needs no answer
	})
}
