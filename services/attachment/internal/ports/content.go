package ports

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/inprocess"
)

// ContentPattern is the route of the HTTP download, as net/http's ServeMux spells it.
const ContentPattern = "GET /v1/attachments/{attachment_id}/content"

// ContentHandler serves an attachment's bytes over plain HTTP, as a browser downloads a file:
// GET /v1/attachments/{attachment_id}/content, with the bearer token in Authorization.
//
// It is not a second implementation of the download: it calls the DownloadAttachmentContent rpc
// on the service's own *grpc.Server (grpc.Server.ServeHTTP, as the vanguard transcoder of the
// HTTP edge does for every other rpc) with the request's headers as metadata and its TCP peer
// as the peer, so the whole interceptor chain — IP lists, the client address behind a trusted
// proxy, token verification, rate limits, the Cedar policy, validation, audit — runs exactly as
// for any call. What it adds is HTTP's framing of the answer, which the transcoder cannot give
// a stream (its REST mapping buffers a whole response and always answers 200):
//   - Range: one range ("bytes=0-99", "bytes=100-", "bytes=-500") is served as 206 Partial
//     Content with Content-Range; a range starting past the end is 416 with
//     "Content-Range: bytes */size"; a header it cannot parse, or several ranges, is ignored
//     and the whole file served (RFC 9110 lets a server ignore Range). Attachments never change,
//     so If-Range always matches and needs no check.
//   - Content-Type is the type sniffed at upload (never HTML or script: the allow-list refuses
//     them, and anything unexpected is served as application/octet-stream), with
//     X-Content-Type-Options: nosniff; Content-Disposition: attachment with the neutralised
//     file name, so a browser saves the file and never renders it; Cache-Control: no-store.
//   - Bytes reach the client as the rpc streams them, segment-verified; the memory of a
//     download is a chunk or two whatever the file size. A failure after the first byte
//     (DATA_LOSS) aborts the response, so the client sees a transfer shorter than its
//     Content-Length, never a complete-looking damaged file.
type ContentHandler struct {
	rpc *connect.Client[attachmentv1.DownloadAttachmentContentRequest, attachmentv1.DownloadAttachmentContentResponse]
	// errors writes refusals as Connect's JSON error body, the edge's other rpcs' format.
	errors *connect.ErrorWriter
}

// NewContentHandler returns the HTTP download over grpcServer, the service's *grpc.Server (as
// an http.Handler).
func NewContentHandler(grpcServer http.Handler) *ContentHandler {
	client := &http.Client{Transport: inprocess.Transport(grpcServer)}
	return &ContentHandler{
		rpc: connect.NewClient[attachmentv1.DownloadAttachmentContentRequest, attachmentv1.DownloadAttachmentContentResponse](
			client, "http://in-process"+attachmentv1.AttachmentService_DownloadAttachmentContent_FullMethodName, connect.WithGRPC()),
		errors: connect.NewErrorWriter(),
	}
}

func (h *ContentHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	rng, ranged := parseRange(r.Header.Get("Range"))
	req := connect.NewRequest(&attachmentv1.DownloadAttachmentContentRequest{
		AttachmentId: r.PathValue("attachment_id"), Offset: rng.offset, Length: rng.length, SuffixLength: rng.suffix,
	})
	// The range travels in the request message; as metadata it would only be noise.
	inprocess.ForwardMetadata(req.Header(), r.Header, "Range", "If-Range")
	ctx, cancel := context.WithCancel(inprocess.WithOrigin(r.Context(), r))
	defer cancel()
	stream, err := h.rpc.CallServerStream(ctx, req)
	if err != nil {
		h.refuse(w, r, err)
		return
	}
	defer func() { _ = stream.Close() }() // the body is read to its end or abandoned; nothing to report
	if !stream.Receive() {
		err := stream.Err()
		if err == nil {
			err = connect.NewError(connect.CodeInternal, errors.New("the download sent no head"))
		}
		h.refuse(w, r, err)
		return
	}
	head := stream.Msg().GetHead()
	if head == nil {
		h.refuse(w, r, connect.NewError(connect.CodeInternal, errors.New("the download's first message is not its head")))
		return
	}
	a := head.GetAttachment()
	hdr.Set("Content-Type", safeContentType(a.GetMediaType()))
	hdr.Set("Content-Disposition", contentDisposition(a.GetFileName()))
	hdr.Set("Content-Length", strconv.FormatInt(head.GetLength(), 10))
	hdr.Set("Accept-Ranges", "bytes")
	status := http.StatusOK
	if ranged {
		status = http.StatusPartialContent
		hdr.Set("Content-Range", "bytes "+strconv.FormatInt(head.GetOffset(), 10)+"-"+
			strconv.FormatInt(head.GetOffset()+head.GetLength()-1, 10)+"/"+strconv.FormatInt(a.GetSizeBytes(), 10))
	}
	w.WriteHeader(status)
	flusher, _ := w.(http.Flusher)
	for stream.Receive() {
		if _, err := w.Write(stream.Msg().GetChunk()); err != nil {
			return // the client went away; cancel (deferred) ends the rpc
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	if stream.Err() != nil {
		// The status line is sent; only cutting the response short tells the client.
		panic(http.ErrAbortHandler)
	}
}

// refuse answers a refused download before any byte: 416 with the file's size for a range
// past the end, Connect's JSON error (its HTTP status from the code) for the rest.
func (h *ContentHandler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	var cerr *connect.Error
	if errors.As(err, &cerr) && cerr.Code() == connect.CodeOutOfRange {
		if size, ok := errorMetadata(cerr, domain.MetadataSizeBytes); ok {
			w.Header().Set("Content-Range", "bytes */"+size)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		// Two strings always encode; a failed write means the client is gone.
		body, _ := json.Marshal(map[string]string{"code": connect.CodeOutOfRange.String(), "message": cerr.Message()}) //nolint:errchkjson // see above
		_, _ = w.Write(body)
		return
	}
	// The request is a plain GET, so the error is written in Connect's unary JSON format.
	_ = h.errors.Write(w, r, err) // a failed write means the client is gone
}

// errorMetadata returns the value of key in err's google.rpc.ErrorInfo metadata.
func errorMetadata(err *connect.Error, key string) (string, bool) {
	for _, d := range err.Details() {
		v, derr := d.Value()
		if info, ok := v.(*errdetails.ErrorInfo); derr == nil && ok {
			s, ok := info.GetMetadata()[key]
			return s, ok
		}
	}
	return "", false
}

// byteRange is a parsed Range header.
type byteRange struct{ offset, length, suffix int64 }

// parseRange parses a Range header of one byte range. It reports false — serve the whole file —
// for no header, another unit, several ranges or anything malformed.
func parseRange(h string) (byteRange, bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return byteRange{}, false
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return byteRange{}, false
	}
	if first == "" { // "-N": the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 {
			return byteRange{}, false
		}
		return byteRange{suffix: n}, true
	}
	from, err := strconv.ParseInt(first, 10, 64)
	if err != nil || from < 0 {
		return byteRange{}, false
	}
	if last == "" { // "N-": from N to the end
		return byteRange{offset: from}, true
	}
	to, err := strconv.ParseInt(last, 10, 64)
	if err != nil || to < from {
		return byteRange{}, false
	}
	return byteRange{offset: from, length: to - from + 1}, true
}

// safeContentType is the sniffed media type when it is one a browser never executes or
// renders as a page; anything else (which the allow-list should never let in) is served as
// opaque bytes.
func safeContentType(mt string) string {
	base, _, err := mime.ParseMediaType(mt)
	if err != nil {
		return "application/octet-stream"
	}
	for _, bad := range []string{"html", "xml", "script", "svg"} {
		if strings.Contains(base, bad) {
			return "application/octet-stream"
		}
	}
	return base
}

// contentDisposition makes a browser save the file under its (already neutralised) name: RFC
// 6266 attachment, the name quoted, or RFC 8187-encoded when it is not plain ASCII.
func contentDisposition(name string) string {
	if v := mime.FormatMediaType("attachment", map[string]string{"filename": name}); v != "" {
		return v
	}
	return "attachment"
}
