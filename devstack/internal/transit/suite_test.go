package transit

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// errTooOld is Vault's text for a ciphertext below min_decryption_version (keysutil.ErrTooOld,
// spelled out so a change in the sdk shows up here).
const errTooOld = "ciphertext or signature version is disallowed by policy (too old)"

// ciphertextRE is Vault's ciphertext format.
var ciphertextRE = regexp.MustCompile(`^vault:v([0-9]+):[A-Za-z0-9+/]+=*$`)

// RunSuite checks, through github.com/hashicorp/vault/api only, that the server at addr behaves
// like Vault's transit engine for everything the services rely on. It mounts a transit engine
// at a fresh path (so it can run against a shared Vault) and unmounts it when done.
func RunSuite(t *testing.T, addr, token string) {
	t.Helper()
	c := newClient(t, addr, token)
	mnt := "transit-suite-" + randomHex(t, 4)

	t.Run("Health", func(t *testing.T) {
		h, err := c.Sys().HealthWithContext(t.Context())
		if err != nil {
			t.Fatalf("Sys().Health() error = %v", err)
		}
		if !h.Initialized || h.Sealed || h.Standby {
			t.Errorf("Sys().Health() = initialized %v sealed %v standby %v, want true false false", h.Initialized, h.Sealed, h.Standby)
		}
		// Health needs no token, as in Vault.
		anon := newClient(t, addr, "")
		if _, err := anon.Sys().HealthWithContext(t.Context()); err != nil {
			t.Errorf("Sys().Health() without token error = %v, want nil", err)
		}
	})

	t.Run("PermissionDenied", func(t *testing.T) {
		for _, tc := range []struct{ name, token string }{
			{name: "no token", token: ""},
			{name: "wrong token", token: "not-" + token},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cl := newClient(t, addr, tc.token)
				_, err := cl.Logical().WriteWithContext(t.Context(), "sys/mounts/"+mnt+"-denied", map[string]any{"type": "transit"})
				wantStatus(t, err, 403, "permission denied")
				_, err = cl.Sys().ListMountsWithContext(t.Context())
				wantStatus(t, err, 403, "permission denied")
			})
		}
	})

	t.Run("Mount", func(t *testing.T) {
		// Before mounting, the engine's paths do not exist.
		_, err := c.Logical().WriteWithContext(t.Context(), mnt+"/encrypt/k", map[string]any{"plaintext": ""})
		wantStatus(t, err, 404, "")

		if err := c.Sys().MountWithContext(t.Context(), mnt, &vault.MountInput{Type: "transit"}); err != nil {
			t.Fatalf("Sys().Mount(%q) error = %v", mnt, err)
		}
		err = c.Sys().MountWithContext(t.Context(), mnt, &vault.MountInput{Type: "transit"})
		wantStatus(t, err, 400, "path is already in use at "+mnt+"/")

		mounts, err := c.Sys().ListMountsWithContext(t.Context())
		if err != nil {
			t.Fatalf("Sys().ListMounts() error = %v", err)
		}
		if m := mounts[mnt+"/"]; m == nil || m.Type != "transit" {
			t.Fatalf("Sys().ListMounts()[%q] = %+v, want type transit", mnt+"/", m)
		}
	})
	if t.Failed() {
		return
	}
	t.Cleanup(func() {
		// t.Context is already done in cleanup; a fresh request is bounded by the client timeout.
		if err := c.Sys().Unmount(mnt); err != nil {
			t.Errorf("Sys().Unmount(%q) error = %v", mnt, err)
		}
	})

	// Every subtest below uses its own key names, so they run in parallel.
	t.Run("Keys", func(t *testing.T) {
		t.Run("CreateReadListRotate", func(t *testing.T) {
			t.Parallel()
			name := "crlr"
			write(t, c, mnt+"/keys/"+name, nil)
			k := readKey(t, c, mnt, name)
			wantData(t, k, map[string]any{
				"name": name, "type": "aes256-gcm96", "latest_version": 1, "min_decryption_version": 1,
				"min_encryption_version": 0, "deletion_allowed": false, "derived": false, "exportable": false,
				"supports_encryption": true, "supports_decryption": true, "supports_derivation": true, "supports_signing": false,
			})
			if got := keyVersions(t, k); !slices.Equal(got, []string{"1"}) {
				t.Errorf("keys of %s = %v, want [1]", name, got)
			}

			for _, list := range []struct {
				name string
				do   func() (*vault.Secret, error)
			}{
				{"LIST", func() (*vault.Secret, error) { return c.Logical().ListWithContext(t.Context(), mnt+"/keys") }},
				{"GET list=true", func() (*vault.Secret, error) {
					return c.Logical().ReadWithDataWithContext(t.Context(), mnt+"/keys", map[string][]string{"list": {"true"}})
				}},
			} {
				s, err := list.do()
				if err != nil || s == nil {
					t.Fatalf("%s %s/keys = %v, %v; want a list", list.name, mnt, s, err)
				}
				if keys := stringList(s.Data["keys"]); !slices.Contains(keys, name) {
					t.Errorf("%s %s/keys = %v, want it to contain %q", list.name, mnt, keys, name)
				}
			}

			write(t, c, mnt+"/keys/"+name+"/rotate", nil)
			k = readKey(t, c, mnt, name)
			wantData(t, k, map[string]any{"latest_version": 2, "min_decryption_version": 1})
			if got := keyVersions(t, k); !slices.Equal(got, []string{"1", "2"}) {
				t.Errorf("keys of %s after rotate = %v, want [1 2]", name, got)
			}
			// Creating an existing key keeps it (Vault answers with a warning, not an error).
			write(t, c, mnt+"/keys/"+name, nil)
			wantData(t, readKey(t, c, mnt, name), map[string]any{"latest_version": 2})
		})

		t.Run("Types", func(t *testing.T) {
			t.Parallel()
			for _, typ := range []string{"aes128-gcm96", "aes256-gcm96", "chacha20-poly1305"} {
				t.Run(typ, func(t *testing.T) {
					name := "type-" + typ
					write(t, c, mnt+"/keys/"+name, map[string]any{"type": typ, "exportable": false, "derived": false})
					wantData(t, readKey(t, c, mnt, name), map[string]any{"type": typ})
					pt := b64([]byte("typed " + typ))
					ct := encrypt(t, c, mnt, name, pt)
					if got := decrypt(t, c, mnt, name, ct); got != pt {
						t.Errorf("decrypt(encrypt(%q)) with %s = %q", pt, typ, got)
					}
				})
			}
		})

		t.Run("DeleteNeedsDeletionAllowed", func(t *testing.T) {
			t.Parallel()
			name := "del"
			write(t, c, mnt+"/keys/"+name, nil)
			_, err := c.Logical().DeleteWithContext(t.Context(), mnt+"/keys/"+name)
			wantStatus(t, err, 400, "deletion is not allowed for this key")
			if k := readKeyOrNil(t, c, mnt, name); k == nil {
				t.Fatalf("key %s gone after a refused delete", name)
			}
			write(t, c, mnt+"/keys/"+name+"/config", map[string]any{"deletion_allowed": true})
			wantData(t, readKey(t, c, mnt, name), map[string]any{"deletion_allowed": true})
			if _, err := c.Logical().DeleteWithContext(t.Context(), mnt+"/keys/"+name); err != nil {
				t.Fatalf("Delete(keys/%s) with deletion_allowed error = %v", name, err)
			}
			if k := readKeyOrNil(t, c, mnt, name); k != nil {
				t.Errorf("Read(keys/%s) after delete = %v, want nil (404)", name, k.Data)
			}
		})

		t.Run("UnknownKey", func(t *testing.T) {
			t.Parallel()
			ct := "vault:v1:" + b64(bytes.Repeat([]byte{1}, 40))
			if k := readKeyOrNil(t, c, mnt, "nope"); k != nil {
				t.Errorf("Read(keys/nope) = %v, want nil (404)", k.Data)
			}
			for _, tc := range []struct {
				name, path string
				data       map[string]any
				msg        string
			}{
				{"decrypt", "decrypt/nope", map[string]any{"ciphertext": ct}, "encryption key not found"},
				{"rewrap", "rewrap/nope", map[string]any{"ciphertext": ct}, "encryption key not found"},
				{"datakey", "datakey/plaintext/nope", nil, "encryption key not found"},
				{"rotate", "keys/nope/rotate", nil, "key not found"},
				{"config", "keys/nope/config", map[string]any{"deletion_allowed": true}, "no existing key named nope could be found"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := c.Logical().WriteWithContext(t.Context(), mnt+"/"+tc.path, tc.data)
					wantStatus(t, err, 400, tc.msg)
				})
			}
			_, err := c.Logical().DeleteWithContext(t.Context(), mnt+"/keys/nope")
			wantStatus(t, err, 400, "not found")
			// Encrypting with a missing key creates it, as in Vault.
			ct2 := encrypt(t, c, mnt, "upserted", b64([]byte("x")))
			if k := readKeyOrNil(t, c, mnt, "upserted"); k == nil || !strings.HasPrefix(ct2, "vault:v1:") {
				t.Errorf("encrypt with a missing key: key = %v, ciphertext prefix %q; want created key and vault:v1:", k, ct2[:min(9, len(ct2))])
			}
		})

		t.Run("UnknownPathAndOperation", func(t *testing.T) {
			t.Parallel()
			_, err := c.Logical().WriteWithContext(t.Context(), mnt+"/no/such/path", map[string]any{"x": 1})
			wantStatus(t, err, 404, "unsupported path")
			_, err = c.Logical().DeleteWithContext(t.Context(), mnt+"/encrypt/k")
			wantStatus(t, err, 405, "unsupported operation")
		})

		t.Run("BadInput", func(t *testing.T) {
			t.Parallel()
			name := "badinput"
			write(t, c, mnt+"/keys/"+name, nil)
			for _, tc := range []struct {
				name, path string
				data       map[string]any
				msg        string
			}{
				{"unknown type", "keys/badtype", map[string]any{"type": "aes512-nope"}, "unknown key type"},
				{"plaintext not base64", "encrypt/" + name, map[string]any{"plaintext": "!!"}, "illegal base64"},
				{"missing plaintext", "encrypt/" + name, map[string]any{}, "missing plaintext to encrypt"},
				{"missing ciphertext", "decrypt/" + name, map[string]any{}, "missing ciphertext to decrypt"},
				{"no prefix", "decrypt/" + name, map[string]any{"ciphertext": "v1:abc"}, "invalid ciphertext: no prefix"},
				{"version too new", "decrypt/" + name, map[string]any{"ciphertext": "vault:v9:" + b64(make([]byte, 40))}, "invalid ciphertext: version is too new"},
				{"bad base64 ciphertext", "decrypt/" + name, map[string]any{"ciphertext": "vault:v1:%%%"}, "invalid ciphertext: could not decode base64"},
				{"tampered ciphertext", "decrypt/" + name, map[string]any{"ciphertext": "vault:v1:" + b64(make([]byte, 40))}, "message authentication failed"},
				{"bits", "datakey/plaintext/" + name, map[string]any{"bits": 100}, "invalid bit length"},
				{"min_decryption_version above latest", "keys/" + name + "/config", map[string]any{"min_decryption_version": 5}, "cannot set min decryption version of 5"},
				{"field type", "keys/" + name + "/config", map[string]any{"min_decryption_version": "two"}, ""},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := c.Logical().WriteWithContext(t.Context(), mnt+"/"+tc.path, tc.data)
					wantStatus(t, err, 400, tc.msg)
				})
			}
			t.Run("malformed JSON", func(t *testing.T) {
				_, err := c.Logical().WriteBytesWithContext(t.Context(), mnt+"/encrypt/"+name, []byte(`{"plaintext":`))
				wantStatus(t, err, 400, "")
			})
		})
	})

	t.Run("Crypto", func(t *testing.T) {
		t.Run("RoundTrip", func(t *testing.T) {
			t.Parallel()
			name := "roundtrip"
			write(t, c, mnt+"/keys/"+name, nil)
			big := make([]byte, 64<<10)
			_, _ = rand.Read(big)
			for _, tc := range []struct {
				name string
				pt   []byte
			}{
				{"empty", nil},
				{"text", []byte("hello, patient portal")},
				{"binary", []byte{0, 1, 2, 0xff, 0xfe}},
				{"64KiB", big},
			} {
				t.Run(tc.name, func(t *testing.T) {
					pt := b64(tc.pt)
					s := write(t, c, mnt+"/encrypt/"+name, map[string]any{"plaintext": pt})
					ct, _ := s.Data["ciphertext"].(string)
					if m := ciphertextRE.FindStringSubmatch(ct); m == nil || m[1] != "1" {
						t.Fatalf("encrypt ciphertext does not look like vault:v1:<base64> (len %d)", len(ct))
					}
					wantData(t, s, map[string]any{"key_version": 1})
					if got := decrypt(t, c, mnt, name, ct); got != pt {
						t.Errorf("decrypt(encrypt(%d bytes)) = %d base64 chars, want %d", len(tc.pt), len(got), len(pt))
					}
					// Encryption is randomised: the same plaintext never gives the same ciphertext.
					if ct2 := encrypt(t, c, mnt, name, pt); ct2 == ct {
						t.Errorf("two encryptions of the same plaintext gave the same ciphertext")
					}
				})
			}
		})

		t.Run("DerivedKeyNeedsContext", func(t *testing.T) {
			t.Parallel()
			name := "derived"
			write(t, c, mnt+"/keys/"+name, map[string]any{"derived": true})
			wantData(t, readKey(t, c, mnt, name), map[string]any{"derived": true})
			ct := boundRoundTrip(t, c, mnt, name, "derived secret", "context", "thread-1")
			_, err := c.Logical().WriteWithContext(t.Context(), mnt+"/decrypt/"+name, map[string]any{"ciphertext": ct})
			wantStatus(t, err, 400, "")
			_, err = c.Logical().WriteWithContext(t.Context(), mnt+"/decrypt/"+name, map[string]any{"ciphertext": ct, "context": b64([]byte("thread-2"))})
			wantStatus(t, err, 400, "message authentication failed")
		})

		t.Run("AssociatedData", func(t *testing.T) {
			t.Parallel()
			name := "aad"
			write(t, c, mnt+"/keys/"+name, nil)
			ct := boundRoundTrip(t, c, mnt, name, "bound", "associated_data", "thread-7/message-9")
			_, err := c.Logical().WriteWithContext(t.Context(), mnt+"/decrypt/"+name, map[string]any{"ciphertext": ct})
			wantStatus(t, err, 400, "message authentication failed")
		})

		t.Run("BatchOneBadItem", func(t *testing.T) {
			t.Parallel()
			name := "batch"
			write(t, c, mnt+"/keys/"+name, nil)
			pts := []string{b64([]byte("first")), "!!not base64!!", b64([]byte("third"))}
			input := make([]any, len(pts))
			for i, pt := range pts {
				input[i] = map[string]any{"plaintext": pt, "reference": fmt.Sprint("ref-", i)}
			}
			// By default one bad item makes the whole answer 400, as in Vault.
			_, err := c.Logical().WriteWithContext(t.Context(), mnt+"/encrypt/"+name, map[string]any{"batch_input": input})
			wantStatus(t, err, 400, "")

			// partial_failure_response_code lets the per-item results through.
			s := write(t, c, mnt+"/encrypt/"+name, map[string]any{"batch_input": input, "partial_failure_response_code": 207})
			res := batchResults(t, s)
			if len(res) != 3 {
				t.Fatalf("encrypt batch_results has %d items, want 3", len(res))
			}
			for i, r := range res {
				if r["reference"] != fmt.Sprint("ref-", i) {
					t.Errorf("encrypt batch_results[%d].reference = %v, want ref-%d", i, r["reference"], i)
				}
				ct, _ := r["ciphertext"].(string)
				errText, _ := r["error"].(string)
				if bad := i == 1; bad != (errText != "") || bad == ciphertextRE.MatchString(ct) {
					t.Errorf("encrypt batch_results[%d]: error %q, ciphertext ok %v; want only item 1 to fail", i, errText, ciphertextRE.MatchString(ct))
				}
			}

			cts := []any{
				map[string]any{"ciphertext": res[0]["ciphertext"]},
				map[string]any{"ciphertext": "vault:v1:" + b64(make([]byte, 40))},
				map[string]any{"ciphertext": res[2]["ciphertext"]},
			}
			_, err = c.Logical().WriteWithContext(t.Context(), mnt+"/decrypt/"+name, map[string]any{"batch_input": cts})
			wantStatus(t, err, 400, "")
			s = write(t, c, mnt+"/decrypt/"+name, map[string]any{"batch_input": cts, "partial_failure_response_code": 207})
			dres := batchResults(t, s)
			if len(dres) != 3 || dres[0]["plaintext"] != pts[0] || dres[2]["plaintext"] != pts[2] {
				t.Fatalf("decrypt batch_results = %d items, want plaintexts of items 0 and 2 back", len(dres))
			}
			if e, _ := dres[1]["error"].(string); !strings.Contains(e, "message authentication failed") {
				t.Errorf("decrypt batch_results[1].error = %q, want message authentication failed", e)
			}

			// A batch where every item succeeds is a plain 200.
			s = write(t, c, mnt+"/decrypt/"+name, map[string]any{"batch_input": []any{cts[0], cts[2]}})
			if r := batchResults(t, s); len(r) != 2 || r[0]["plaintext"] != pts[0] || r[1]["plaintext"] != pts[2] {
				t.Errorf("decrypt batch of 2 good items = %d items, want both plaintexts", len(r))
			}
		})

		t.Run("Datakey", func(t *testing.T) {
			t.Parallel()
			name := "datakey"
			write(t, c, mnt+"/keys/"+name, nil)
			for _, tc := range []struct {
				name string
				bits any
				size int
			}{
				{"default", nil, 32},
				{"128", 128, 16},
				{"256", 256, 32},
				{"512", 512, 64},
			} {
				t.Run("plaintext "+tc.name, func(t *testing.T) {
					data := map[string]any{}
					if tc.bits != nil {
						data["bits"] = tc.bits
					}
					s := write(t, c, mnt+"/datakey/plaintext/"+name, data)
					pt, _ := s.Data["plaintext"].(string)
					ct, _ := s.Data["ciphertext"].(string)
					raw, err := base64.StdEncoding.DecodeString(pt)
					if err != nil || len(raw) != tc.size {
						t.Fatalf("datakey plaintext: %d bytes (err %v), want %d", len(raw), err, tc.size)
					}
					if !ciphertextRE.MatchString(ct) {
						t.Fatalf("datakey ciphertext does not look like vault:vN:<base64>")
					}
					if got := decrypt(t, c, mnt, name, ct); got != pt {
						t.Errorf("decrypt(datakey ciphertext) differs from the datakey plaintext")
					}
				})
			}
			t.Run("wrapped", func(t *testing.T) {
				s := write(t, c, mnt+"/datakey/wrapped/"+name, nil)
				if _, has := s.Data["plaintext"]; has {
					t.Fatalf("datakey/wrapped returned a plaintext field")
				}
				ct, _ := s.Data["ciphertext"].(string)
				raw, err := base64.StdEncoding.DecodeString(decrypt(t, c, mnt, name, ct))
				if err != nil || len(raw) != 32 {
					t.Errorf("decrypt(wrapped datakey) = %d bytes (err %v), want 32", len(raw), err)
				}
			})
		})

		t.Run("RewrapAfterRotate", func(t *testing.T) {
			t.Parallel()
			name := "rewrap"
			write(t, c, mnt+"/keys/"+name, nil)
			pt := b64([]byte("rewrap me"))
			ct1 := encrypt(t, c, mnt, name, pt)
			write(t, c, mnt+"/keys/"+name+"/rotate", nil)
			write(t, c, mnt+"/keys/"+name+"/rotate", nil)

			s := write(t, c, mnt+"/rewrap/"+name, map[string]any{"ciphertext": ct1})
			ct3, _ := s.Data["ciphertext"].(string)
			if !strings.HasPrefix(ct1, "vault:v1:") || !strings.HasPrefix(ct3, "vault:v3:") {
				t.Fatalf("rewrap moved %.9s -> %.9s, want vault:v1: -> vault:v3:", ct1, ct3)
			}
			wantData(t, s, map[string]any{"key_version": 3})
			if _, has := s.Data["plaintext"]; has {
				t.Errorf("rewrap response carries a plaintext field")
			}
			if got := decrypt(t, c, mnt, name, ct3); got != pt {
				t.Errorf("decrypt(rewrapped) differs from the original plaintext")
			}

			// Batch rewrap, with the per-item results.
			ctA, ctB := encryptVersion(t, c, mnt, name, pt, 1), encryptVersion(t, c, mnt, name, pt, 2)
			s = write(t, c, mnt+"/rewrap/"+name, map[string]any{"batch_input": []any{
				map[string]any{"ciphertext": ctA}, map[string]any{"ciphertext": ctB},
			}})
			for i, r := range batchResults(t, s) {
				ct, _ := r["ciphertext"].(string)
				if !strings.HasPrefix(ct, "vault:v3:") || decrypt(t, c, mnt, name, ct) != pt {
					t.Errorf("batch rewrap item %d = %.9s..., want vault:v3: decrypting to the original", i, ct)
				}
			}
		})

		t.Run("MinDecryptionVersion", func(t *testing.T) {
			t.Parallel()
			name := "mindec"
			write(t, c, mnt+"/keys/"+name, nil)
			pt := b64([]byte("old"))
			ct1 := encrypt(t, c, mnt, name, pt)
			write(t, c, mnt+"/keys/"+name+"/rotate", nil)
			ct2 := encrypt(t, c, mnt, name, pt)

			write(t, c, mnt+"/keys/"+name+"/config", map[string]any{"min_decryption_version": 2})
			k := readKey(t, c, mnt, name)
			wantData(t, k, map[string]any{"min_decryption_version": 2, "latest_version": 2})
			if got := keyVersions(t, k); !slices.Equal(got, []string{"2"}) {
				t.Errorf("keys of %s after min_decryption_version=2 = %v, want [2]", name, got)
			}
			_, err := c.Logical().WriteWithContext(t.Context(), mnt+"/decrypt/"+name, map[string]any{"ciphertext": ct1})
			wantStatus(t, err, 400, errTooOld)
			_, err = c.Logical().WriteWithContext(t.Context(), mnt+"/rewrap/"+name, map[string]any{"ciphertext": ct1})
			wantStatus(t, err, 400, errTooOld)
			if got := decrypt(t, c, mnt, name, ct2); got != pt {
				t.Errorf("decrypt(v2 ciphertext) after min_decryption_version=2 differs")
			}
			// Lowering it again brings version 1 back (it is a policy floor, not destruction).
			write(t, c, mnt+"/keys/"+name+"/config", map[string]any{"min_decryption_version": 1})
			if got := decrypt(t, c, mnt, name, ct1); got != pt {
				t.Errorf("decrypt(v1 ciphertext) after lowering min_decryption_version differs")
			}
		})
	})
}

// newClient returns a vault/api client for addr with token ("" for none) and no retries, so
// status codes are observed as sent.
func newClient(t *testing.T, addr, token string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatalf("vault.NewClient(%q) error = %v", addr, err)
	}
	c.ClearToken()
	if token != "" {
		c.SetToken(token)
	}
	return c
}

// wantStatus fails unless err is a vault/api response error with the status code and, when
// msg is set, an error text containing msg.
func wantStatus(t *testing.T, err error, code int, msg string) {
	t.Helper()
	var re *vault.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v, want *api.ResponseError with status %d", err, code)
	}
	if re.StatusCode != code {
		t.Errorf("status = %d (errors %q), want %d", re.StatusCode, re.Errors, code)
	}
	if msg != "" && !strings.Contains(strings.Join(re.Errors, "\n"), msg) {
		t.Errorf("errors = %q, want one containing %q", re.Errors, msg)
	}
}

func write(t *testing.T, c *vault.Client, path string, data map[string]any) *vault.Secret {
	t.Helper()
	s, err := c.Logical().WriteWithContext(t.Context(), path, data)
	if err != nil {
		t.Fatalf("Write(%s) error = %v", path, err)
	}
	if s == nil {
		// Older Vault answers some writes (key create, rotate) with 204.
		s = &vault.Secret{Data: map[string]any{}}
	}
	return s
}

func readKeyOrNil(t *testing.T, c *vault.Client, mnt, name string) *vault.Secret {
	t.Helper()
	s, err := c.Logical().ReadWithContext(t.Context(), mnt+"/keys/"+name)
	if err != nil {
		t.Fatalf("Read(%s/keys/%s) error = %v", mnt, name, err)
	}
	return s
}

func readKey(t *testing.T, c *vault.Client, mnt, name string) *vault.Secret {
	t.Helper()
	s := readKeyOrNil(t, c, mnt, name)
	if s == nil {
		t.Fatalf("Read(%s/keys/%s) = nil, want the key", mnt, name)
	}
	return s
}

// wantData compares selected fields; numbers arrive as json.Number.
func wantData(t *testing.T, s *vault.Secret, want map[string]any) {
	t.Helper()
	for k, w := range want {
		got := s.Data[k]
		if n, ok := got.(json.Number); ok {
			got = n.String()
			w = fmt.Sprint(w)
		}
		if got != w {
			t.Errorf("data[%q] = %v, want %v", k, got, w)
		}
	}
}

func keyVersions(t *testing.T, s *vault.Secret) []string {
	t.Helper()
	m, ok := s.Data["keys"].(map[string]any)
	if !ok {
		t.Fatalf("data[keys] = %T, want an object", s.Data["keys"])
	}
	var out []string
	for v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func batchResults(t *testing.T, s *vault.Secret) []map[string]any {
	t.Helper()
	l, ok := s.Data["batch_results"].([]any)
	if !ok {
		t.Fatalf("data[batch_results] = %T, want a list", s.Data["batch_results"])
	}
	out := make([]map[string]any, len(l))
	for i, x := range l {
		out[i], _ = x.(map[string]any)
	}
	return out
}

func encrypt(t *testing.T, c *vault.Client, mnt, name, pt string) string {
	t.Helper()
	return encryptVersion(t, c, mnt, name, pt, 0)
}

func encryptVersion(t *testing.T, c *vault.Client, mnt, name, pt string, version int) string {
	t.Helper()
	s := write(t, c, mnt+"/encrypt/"+name, map[string]any{"plaintext": pt, "key_version": version})
	ct, _ := s.Data["ciphertext"].(string)
	if !ciphertextRE.MatchString(ct) {
		t.Fatalf("encrypt with %s: ciphertext does not look like vault:vN:<base64>", name)
	}
	return ct
}

func decrypt(t *testing.T, c *vault.Client, mnt, name, ct string) string {
	t.Helper()
	s := write(t, c, mnt+"/decrypt/"+name, map[string]any{"ciphertext": ct})
	pt, _ := s.Data["plaintext"].(string)
	return pt
}

// boundRoundTrip encrypts plaintext with field (context or associated_data) set to value, checks
// that decrypting with the same field gives it back, and returns the ciphertext. Both are sent
// base64-encoded, as Transit takes them.
func boundRoundTrip(t *testing.T, c *vault.Client, mnt, name, plaintext, field, value string) string {
	t.Helper()
	pt, v := b64([]byte(plaintext)), b64([]byte(value))
	s := write(t, c, mnt+"/encrypt/"+name, map[string]any{"plaintext": pt, field: v})
	ct := s.Data["ciphertext"].(string)
	got := write(t, c, mnt+"/decrypt/"+name, map[string]any{"ciphertext": ct, field: v})
	if got.Data["plaintext"] != pt {
		t.Errorf("decrypt with %s = %v, want %q", field, got.Data["plaintext"], pt)
	}
	return ct
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
