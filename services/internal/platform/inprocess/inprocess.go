// Package inprocess lets a plain HTTP route of a service call an rpc on the service's own
// *grpc.Server (as an http.Handler, grpc.Server.ServeHTTP) without leaving the process.
//
// A route that needs an rpc's answer — attachment's ranged download, messaging's SCIM
// provisioning — must not reimplement the rpc or call its handler directly: the interceptor chain
// is the only guard (client address behind trusted proxies, IP lists, token verification, rate
// limits, the Cedar policy, audit, validation, error masking), so the route enters the chain as
// any client would. The request's headers travel as metadata, as the HTTP edge's transcoder sends
// them, and the HTTP request's own peer (RemoteAddr, TLS) is presented as the rpc's peer, so the
// guards judge the real client and not the process calling itself.
package inprocess

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"connectrpc.com/connect"
)

// baseURL is the origin of every in-process call: the transport never dials, so the host only
// has to parse.
const baseURL = "http://in-process"

// origin is the incoming HTTP request's peer, which the in-process rpc presents as its own.
type origin struct {
	remoteAddr string
	tls        *tls.ConnectionState
}

type originKey struct{}

// WithOrigin returns ctx carrying r's peer (r.RemoteAddr, r.TLS), which Transport and Unary give
// the in-process request, so the rpc's interceptors see the client of r. Without it the rpc has
// no peer address, which address-based guards treat as they treat any unknown client.
func WithOrigin(ctx context.Context, r *http.Request) context.Context {
	return context.WithValue(ctx, originKey{}, origin{remoteAddr: r.RemoteAddr, tls: r.TLS})
}

// framing are the headers ForwardMetadata leaves out: HTTP's own framing, which the in-process
// request sets for itself and which would otherwise describe the wrong message.
var framing = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Host": true, "Content-Length": true, "Content-Type": true,
	"Content-Encoding": true, "Accept-Encoding": true,
}

// ForwardMetadata copies into dst the headers of src that become the rpc's metadata: all but
// HTTP's framing, the gRPC and Connect protocol headers (Grpc-*, Connect-*: the client sets its
// own, and a caller's copy could change the deadline or encoding of the call) and the keys in
// except. Authorization, X-Forwarded-For and X-Request-Id are kept, so they mean what they mean
// on the gRPC listener. dst gets copies of the value slices, never src's own.
func ForwardMetadata(dst, src http.Header, except ...string) {
	for k, vs := range src {
		ck := http.CanonicalHeaderKey(k)
		if framing[ck] || strings.HasPrefix(ck, "Grpc-") || strings.HasPrefix(ck, "Connect-") ||
			slices.ContainsFunc(except, func(e string) bool { return http.CanonicalHeaderKey(e) == ck }) {
			continue
		}
		dst[ck] = append(dst[ck], vs...)
	}
}

// Transport returns an http.RoundTripper that serves each request with h in this process,
// streaming the response: the body flows through a pipe as h writes it, and the trailers (where
// gRPC puts its status) are filled in when h returns, before the body's EOF. The request is
// presented as HTTP/2, which grpc.Server.ServeHTTP requires, with the peer WithOrigin recorded
// in its context. RoundTrip returns once h has sent its headers, or when the request's context
// ends first.
func Transport(h http.Handler) http.RoundTripper { return transport{h: h} }

type transport struct{ h http.Handler }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return roundTrip(t.h, req)
}

func roundTrip(h http.Handler, req *http.Request) (*http.Response, error) {
	in := req.Clone(req.Context())
	in.Proto, in.ProtoMajor, in.ProtoMinor = "HTTP/2", 2, 0 // grpc.Server.ServeHTTP serves HTTP/2 only
	in.RequestURI = req.URL.RequestURI()
	if o, ok := req.Context().Value(originKey{}).(origin); ok {
		in.RemoteAddr, in.TLS = o.remoteAddr, o.tls
	}
	if in.Body == nil {
		in.Body = http.NoBody
	}
	pr, pw := io.Pipe()
	rw := &pipeResponse{header: http.Header{}, body: pw, started: make(chan struct{}),
		resp: &http.Response{Proto: "HTTP/2", ProtoMajor: 2, Request: req, Body: pr, ContentLength: -1, Trailer: http.Header{}}}
	go func() {
		defer rw.finish()
		h.ServeHTTP(rw, in)
	}()
	select {
	case <-rw.started:
		return rw.resp, nil
	case <-req.Context().Done():
		pr.CloseWithError(req.Context().Err())
		return nil, req.Context().Err()
	}
}

// pipeResponse is the http.ResponseWriter of an in-process request.
type pipeResponse struct {
	header  http.Header
	body    *io.PipeWriter
	resp    *http.Response
	started chan struct{}
	once    sync.Once
	// declared are the trailer keys the handler announced in its "Trailer" header.
	declared []string
}

func (w *pipeResponse) Header() http.Header { return w.header }

func (w *pipeResponse) WriteHeader(code int) {
	w.once.Do(func() {
		w.resp.StatusCode, w.resp.Status = code, strconv.Itoa(code)+" "+http.StatusText(code)
		w.resp.Header = w.header.Clone()
		for _, v := range w.header.Values("Trailer") {
			for k := range strings.SplitSeq(v, ",") {
				w.declared = append(w.declared, http.CanonicalHeaderKey(strings.TrimSpace(k)))
			}
		}
		close(w.started)
	})
}

func (w *pipeResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// Flush sends the headers; written bytes are never held (the pipe hands them over).
func (w *pipeResponse) Flush() { w.WriteHeader(http.StatusOK) }

// finish sets the trailers — the declared keys, and those set with http.TrailerPrefix — and
// ends the body, after which the reader sees them.
func (w *pipeResponse) finish() {
	w.WriteHeader(http.StatusOK)
	for _, k := range w.declared {
		if vs := w.header.Values(k); len(vs) > 0 {
			w.resp.Trailer[k] = vs
		}
	}
	for k, vs := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			w.resp.Trailer[http.CanonicalHeaderKey(name)] = vs
		}
	}
	_ = w.body.Close() // a pipe's Close always succeeds
}

// handlerKey carries the handler of a Unary call to the shared client's transport, so a cached
// client serves every handler without holding on to any.
type handlerKey struct{}

// contextTransport serves each request with the handler in its context (handlerKey).
type contextTransport struct{}

func (contextTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h, ok := req.Context().Value(handlerKey{}).(http.Handler)
	if !ok {
		return nil, errors.New("inprocess: a request without a handler") // only Unary sends here, always with one
	}
	return roundTrip(h, req)
}

// clientKey names one cached client: the method and its message types. Handlers are not part
// of it (see handlerKey), so the cache is as large as the set of methods the code calls.
type clientKey struct {
	method   string
	req, res reflect.Type
}

// clients holds a *connect.Client[Req, Res] per clientKey. A client is safe for concurrent use
// and has no per-call state, so sharing one is safe.
var clients sync.Map

var sharedHTTPClient = &http.Client{Transport: contextTransport{}}

// Unary calls the unary rpc fullMethod ("/pkg.Service/Method") on h, the service's *grpc.Server,
// over the gRPC protocol (connect-go's client, protobuf encoding, so Req and Res are the
// generated message types), and returns its response.
//
// header becomes the request metadata as ForwardMetadata filters it (pass the incoming
// request's header to carry its Authorization and forwarding headers); ctx should carry the
// incoming request's peer (WithOrigin) and bounds the call. A refusal is the rpc's status as a
// *connect.Error: the caller maps its Code(), and must treat its Message() as the server's
// (masked) text, never as its own.
func Unary[Req, Res any](ctx context.Context, h http.Handler, fullMethod string, header http.Header, req *Req) (*Res, error) {
	key := clientKey{method: fullMethod, req: reflect.TypeFor[Req](), res: reflect.TypeFor[Res]()}
	c, ok := clients.Load(key)
	if !ok {
		c, _ = clients.LoadOrStore(key, connect.NewClient[Req, Res](sharedHTTPClient, baseURL+fullMethod, connect.WithGRPC()))
	}
	creq := connect.NewRequest(req)
	ForwardMetadata(creq.Header(), header)
	res, err := c.(*connect.Client[Req, Res]).CallUnary(context.WithValue(ctx, handlerKey{}, h), creq)
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}
