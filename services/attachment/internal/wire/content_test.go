package wire_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/wire"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// contentServer serves the service's HTTP routes (the download) over TLS on loopback.
func (e *env) contentServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for pattern, h := range wire.HTTPHandlers(e.h.Proc) {
		mux.Handle(pattern, h)
	}
	ts := httptest.NewUnstartedServer(mux)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// get sends GET url with the persona's token (none for a zero persona) and rng as Range.
func get(t *testing.T, ts *httptest.Server, token, url, rng string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s (Range %q) = %v", url, rng, err)
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", url, err)
	}
	return resp, body
}

func TestHTTPDownloadRanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ts := e.contentServer(t)
	ctx := e.as(t, servicetest.Patient)
	mark := marker("range")
	data := textFile(mark, 300<<10+7) // several 64 KiB segments and a short last one
	a, err := sessionUpload(ctx, e.api, &attachmentv1.UploadMetadata{FileName: "../" + mark + " notes.txt", DeclaredMediaType: "text/plain"}, data, 100<<10)
	if err != nil {
		t.Fatalf("session upload = %v", err)
	}
	url := ts.URL + "/v1/attachments/" + a.GetAttachmentId() + "/content"
	token := e.h.Token(t, servicetest.Patient)
	size := len(data)

	resp, body := get(t, ts, token, url, "")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET (no Range) = %d, %d bytes, want 200 and the file", resp.StatusCode, len(body))
	}
	for k, want := range map[string]string{
		"Content-Type": "text/plain", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
		"Content-Length": strconv.Itoa(size), "Accept-Ranges": "bytes",
		"Content-Disposition": `attachment; filename="` + mark + ` notes.txt"`,
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET header %s = %q, want %q", k, got, want)
		}
	}

	tests := []struct {
		name, rng  string
		start, end int // the bytes served, [start, end)
	}{
		{name: "first bytes", rng: "bytes=0-99", start: 0, end: 100},
		{name: "middle across segments", rng: "bytes=65000-200000", start: 65000, end: 200001},
		{name: "suffix", rng: "bytes=-500", start: size - 500, end: size},
		{name: "suffix longer than the file", rng: fmt.Sprintf("bytes=-%d", size+10), start: 0, end: size},
		{name: "open-ended", rng: "bytes=300000-", start: 300000, end: size},
		{name: "end past the end is cut", rng: fmt.Sprintf("bytes=%d-%d", size-10, size+1000), start: size - 10, end: size},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, ts, token, url, tt.rng)
			wantRange := fmt.Sprintf("bytes %d-%d/%d", tt.start, tt.end-1, size)
			if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != wantRange ||
				resp.Header.Get("Content-Length") != strconv.Itoa(tt.end-tt.start) || !bytes.Equal(body, data[tt.start:tt.end]) {
				t.Errorf("GET Range %s = %d %q, %d bytes, want 206 %q and bytes [%d, %d)", tt.rng, resp.StatusCode,
					resp.Header.Get("Content-Range"), len(body), wantRange, tt.start, tt.end)
			}
		})
	}
	t.Run("beyond the end", func(t *testing.T) {
		resp, body := get(t, ts, token, url, fmt.Sprintf("bytes=%d-", size))
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) ||
			bytes.Contains(body, []byte(mark)) {
			t.Errorf("GET Range past the end = %d %q %s, want 416 \"bytes */%d\"", resp.StatusCode, resp.Header.Get("Content-Range"), body, size)
		}
	})
	t.Run("several ranges serve the whole file", func(t *testing.T) {
		resp, body := get(t, ts, token, url, "bytes=0-1,5-6")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
			t.Errorf("GET two ranges = %d, %d bytes, want 200 and the file", resp.StatusCode, len(body))
		}
	})
	t.Run("the same guards as every rpc", func(t *testing.T) {
		for _, c := range []struct {
			name  string
			token string
			want  int
		}{
			{"no token", "", http.StatusUnauthorized},
			{"another patient", e.h.Token(t, servicetest.OtherPatient), http.StatusNotFound},
			{"an auditor (no download rpc)", e.h.Token(t, servicetest.Auditor), http.StatusForbidden},
		} {
			resp, body := get(t, ts, c.token, url, "")
			if resp.StatusCode != c.want || bytes.Contains(body, []byte(mark)) || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("GET as %s = %d %s, want %d with no content", c.name, resp.StatusCode, body, c.want)
			}
		}
		// The request's rules run too: the id must be a UUID.
		resp, _ := get(t, ts, token, ts.URL+"/v1/attachments/not-a-uuid/content", "")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET of a malformed id = %d, want 400", resp.StatusCode)
		}
	})
	t.Run("every download audited", func(t *testing.T) {
		recs := findAudit(e.auditRecords(t), eventsv1.Action_ACTION_DOWNLOAD, a.GetAttachmentId())
		ranged := 0
		for _, r := range recs {
			if r.GetActor().GetSubject() != servicetest.Patient.Subject || !strings.HasSuffix(r.GetOperation(), "/DownloadAttachmentContent") {
				t.Errorf("download audit record = %v, want the patient through DownloadAttachmentContent", r)
			}
			if r.GetReasonCode() == "range" {
				ranged++
			}
		}
		// The unranged GET, the six ranges, the two-range GET (the whole file).
		if len(recs) != 8 || ranged != 5 {
			t.Errorf("download audit records = %d (%d ranged), want 8 (5 ranged)", len(recs), ranged)
		}
	})
}
