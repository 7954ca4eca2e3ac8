package transit

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// FuzzDecodeJSONObject feeds arbitrary request bodies to the body decoder and the batch_input
// decoder: neither may panic, and a decoded batch has one item per input element.
func FuzzDecodeJSONObject(f *testing.F) {
	for _, seed := range []string{
		``,
		`{}`,
		`null`,
		`{"plaintext":"aGk="}`,
		`{"batch_input":[{"plaintext":"aGk=","context":"Yw==","key_version":2,"reference":"r"}]}`,
		`{"batch_input":[{"ciphertext":"vault:v1:AAAA"},{"ciphertext":null},{}]}`,
		`{"batch_input":[{"plaintext":null},{"key_version":"x"},{"key_version":1.5e300}]}`,
		`{"batch_input":"not a list"}`,
		`{"batch_input":[1,2]}`,
		`[1,2,3]`,
		`{"plaintext":`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeJSONObject(body)
		if err != nil || m == nil {
			return
		}
		raw, ok := m["batch_input"].([]any)
		for _, mode := range [][2]bool{{true, false}, {false, true}} {
			items, err := decodeBatchInput(m["batch_input"], mode[0], mode[1])
			if err == nil && ok && len(items) != len(raw) {
				t.Fatalf("decodeBatchInput() = %d items for %d inputs", len(items), len(raw))
			}
		}
	})
}

// FuzzDecryptCiphertext sends arbitrary ciphertext strings to decrypt (single and batch)
// through the whole handler. Every answer must be 200 or 400 with a JSON body, and a 200 can
// only ever give back the one plaintext this key has encrypted.
func FuzzDecryptCiphertext(f *testing.F) {
	srv, err := New(Config{RootToken: "root"})
	if err != nil {
		f.Fatal(err)
	}
	const plaintext = "ZnV6eg==" // "fuzz"
	call := func(method, path string, body any) (int, map[string]any) {
		raw, _ := json.Marshal(body)
		req := httptest.NewRequest(method, "/v1/"+path, bytes.NewReader(raw))
		req.Header.Set("X-Vault-Token", "root")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		var out map[string]any
		if rec.Body.Len() > 0 {
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				f.Fatalf("%s %s: body is not JSON: %v", method, path, err)
			}
		}
		return rec.Code, out
	}
	if code, _ := call(http.MethodPost, "sys/mounts/transit", map[string]any{"type": "transit"}); code != http.StatusNoContent {
		f.Fatalf("mount = %d", code)
	}
	code, out := call(http.MethodPost, "transit/encrypt/fuzz", map[string]any{"plaintext": plaintext})
	if code != http.StatusOK {
		f.Fatalf("encrypt = %d", code)
	}
	genuine := out["data"].(map[string]any)["ciphertext"].(string)

	for _, seed := range []string{
		genuine,
		"vault:v0:" + genuine[len("vault:v1:"):],
		"vault:v01:" + genuine[len("vault:v1:"):],
		genuine[:len(genuine)-2],
		"vault:v1:",
		"vault:v1",
		"vault:",
		"vault:v-1:AAAA",
		"vault:v99999999999999999999:AAAA",
		"vault:vx:AAAA",
		"vault:v1:!!!!",
		"vault:v1:AAAAAAAAAAAAAAAAAAAAAAAA",
		"",
		"\x00",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, ct string, batch bool) {
		body := map[string]any{"ciphertext": ct}
		if batch {
			body = map[string]any{"batch_input": []any{map[string]any{"ciphertext": ct}}}
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/transit/decrypt/fuzz", bytes.NewReader(mustJSON(t, body)))
		req.Header.Set("X-Vault-Token", "root")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		var resp struct {
			Data struct {
				Plaintext    *string `json:"plaintext"`
				BatchResults []struct {
					Plaintext string `json:"plaintext"`
					Error     string `json:"error"`
				} `json:"batch_results"`
			} `json:"data"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("decrypt answer is not JSON (status %d): %v", rec.Code, err)
		}
		switch rec.Code {
		case http.StatusOK:
			got := ""
			if batch && len(resp.Data.BatchResults) == 1 {
				got = resp.Data.BatchResults[0].Plaintext
			} else if resp.Data.Plaintext != nil {
				got = *resp.Data.Plaintext
			}
			if got != plaintext {
				t.Fatalf("decrypt succeeded with plaintext %q, want %q (the only one encrypted)", got, plaintext)
			}
		case http.StatusBadRequest:
		default:
			t.Fatalf("decrypt status = %d, want 200 or 400", rec.Code)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// FuzzDecodeSnapshot feeds arbitrary bytes to the snapshot decoder, the parser a restore runs
// on an uploaded body before anything is replaced. It may refuse, never panic; what it accepts
// has SHA256SUMS matching its content, and re-encodes into a snapshot that decodes to the same
// entries.
func FuzzDecodeSnapshot(f *testing.F) {
	sealKey := bytes.Repeat([]byte{7}, 32)
	valid, err := encodeSnapshot(map[string][]byte{
		mountsKey:             []byte(`[{"path":"transit/","type":"transit","uuid":"u","accessor":"a"}]`),
		"logical/u/policy/k":  []byte(`{"name":"k"}`),
		"logical/u/archive/k": nil,
	}, sealKey, time.Unix(1, 0))
	if err != nil {
		f.Fatal(err)
	}
	empty, err := encodeSnapshot(nil, sealKey, time.Unix(1, 0))
	if err != nil {
		f.Fatal(err)
	}
	parts := snapshotParts(f, valid)
	for _, seed := range [][]byte{
		valid,
		empty,
		valid[:len(valid)/2],
		valid[:len(valid)-4],
		append(bytes.Clone(valid), valid...),
		buildSnapshot(f, parts[:3]),
		buildSnapshot(f, append(slices.Clone(parts), parts[0])),
		gzipBytes(f, []byte("not a tar")),
		nil,
		[]byte("\x1f\x8b"),
	} {
		f.Add(seed)
	}
	// The input is also tried as the archive inside the gzip stream, so the fuzzer reaches the
	// tar and checksum checks without having to forge a gzip CRC.
	f.Add(gunzip(f, valid))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkDecoded(t, sealKey, raw)
		checkDecoded(t, sealKey, gzipBytes(t, raw))
	})
}

// checkDecoded decodes raw and, when it is accepted, checks what FuzzDecodeSnapshot promises.
func checkDecoded(t *testing.T, sealKey, raw []byte) {
	t.Helper()
	d, err := decodeSnapshot(raw)
	if err != nil {
		return
	}
	if len(d.entries) != d.meta.Entries {
		t.Fatalf("accepted %d entries, meta says %d", len(d.entries), d.meta.Entries)
	}
	again, err := encodeSnapshot(d.entries, sealKey, time.Unix(1, 0))
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	d2, err := decodeSnapshot(again)
	if err != nil {
		t.Fatalf("decode of a re-encoded snapshot: %v", err)
	}
	if !maps.EqualFunc(d.entries, d2.entries, bytes.Equal) {
		t.Fatalf("entries changed across a re-encode")
	}
	if !d2.sealedBy(sealKey) {
		t.Fatalf("re-encoded snapshot not sealed by its key")
	}
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
