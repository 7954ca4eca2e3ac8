package httpedge

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

// answer is what the edge learns of one request on its way: why the edge refused it itself,
// or that it reached the gRPC server, whose access log then speaks for it.
type answer struct {
	reason  string
	reached bool
}

type answerKey struct{}

func answerOf(r *http.Request) *answer {
	a, _ := r.Context().Value(answerKey{}).(*answer)
	return a
}

// refuse answers r with status and text, recording reason for the edge's log line.
func refuse(w http.ResponseWriter, r *http.Request, status int, reason, text string) {
	if a := answerOf(r); a != nil {
		a.reason = reason
	}
	http.Error(w, text, status)
}

// markReached records that r goes on to the gRPC server.
func markReached(r *http.Request) {
	if a := answerOf(r); a != nil {
		a.reached = true
	}
}

// logRefusals wraps h so that an error the edge answered itself — an unlisted origin, a token
// or PHI in the URL, a method off the surface, a route or encoding the transcoder does not
// know, a plain route's own refusal — is logged: it never reaches the gRPC server, whose
// access log records every rpc. The line names the method, status, the refusal, peer and the
// caller's request id when well formed; never the path or the query, which may hold what was
// refused.
func logRefusals(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := &answer{}
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), answerKey{}, a)))
		if a.reached || sw.status < http.StatusBadRequest {
			return
		}
		reason := a.reason
		if reason == "" {
			reason = "not_routed"
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.Int("status", sw.status), slog.String("refusal", reason),
			slog.String("peer", r.RemoteAddr)}
		if id := r.Header.Get("X-Request-Id"); logging.WellFormedRequestID(id) {
			attrs = append(attrs, slog.String(logging.KeyRequestID, id))
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "http request refused", attrs...)
	})
}

// statusWriter remembers the status of a response. It passes Flush on (gRPC and streaming
// answers need it) and unwraps for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// plainRoute marks h's refusals as a plain route's own (a SCIM body that fails validation, a
// download's bad range); what h asks of the gRPC server is logged there too.
func plainRoute(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := answerOf(r); a != nil {
			a.reason = "route"
		}
		h.ServeHTTP(w, r)
	})
}
