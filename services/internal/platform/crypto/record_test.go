package crypto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func knownRecordSealer(t testing.TB) *RecordSealer {
	s, err := NewRecordSealer(fixedKey(), "dek-1")
	if err != nil {
		t.Fatal(err)
	}
	s.rand = &countingReader{}
	return s
}

func knownRecord(t testing.TB) (env, aad []byte) {
	aad = MessageFieldAAD("thread-1", "message-1", "body")
	env, err := knownRecordSealer(t).SealRecord([]byte("Please call me about my results."), aad)
	if err != nil {
		t.Fatal(err)
	}
	return env, aad
}

func TestSealRecordKnownAnswer(t *testing.T) {
	t.Parallel()
	env, aad := knownRecord(t)
	golden(t, "record_v1.golden", env)
	golden(t, "aad_message_field.golden", aad)
	pt, err := knownRecordSealer(t).OpenRecord(env, aad)
	if err != nil || string(pt) != "Please call me about my results." {
		t.Fatalf("OpenRecord(golden) = %q, %v", pt, err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	key := make([]byte, KeySize)
	key[0] = 9
	s, err := NewRecordSealer(key, strings.Repeat("r", MaxKeyRefLen))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pt   []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0}},
		{"text", []byte("subject: lab results")},
		{"64 KiB", bytes.Repeat([]byte{0x5a}, 64<<10)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			aad := MessageFieldAAD("t", "m", "subject")
			env, err := s.SealRecord(tc.pt, aad)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(env), len(tc.pt)+RecordOverhead(MaxKeyRefLen); got != want {
				t.Errorf("len(SealRecord) = %d, want %d", got, want)
			}
			got, err := s.OpenRecord(env, aad)
			if err != nil || !bytes.Equal(got, tc.pt) {
				t.Fatalf("OpenRecord = %x, %v; want %x", got, err, tc.pt)
			}
			p, err := ParseEnvelope(env)
			if err != nil || p.KeyRef != s.KeyRef() {
				t.Fatalf("ParseEnvelope().KeyRef = %q, %v; want %q", p.KeyRef, err, s.KeyRef())
			}
		})
	}
}

func TestRecordNoncesDiffer(t *testing.T) {
	t.Parallel()
	s, err := NewRecordSealer(fixedKey(), "k")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.SealRecord([]byte("same"), nil)
	b, _ := s.SealRecord([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("SealRecord twice gave identical envelopes: nonces repeat")
	}
}

func TestOpenRecordTampered(t *testing.T) {
	t.Parallel()
	env, aad := knownRecord(t)
	s := knownRecordSealer(t)
	other := make([]byte, KeySize)
	otherSealer, _ := NewRecordSealer(other, "dek-1")

	tests := []struct {
		name   string
		sealer *RecordSealer
		env    []byte
		aad    []byte
		want   error
	}{
		{"other message", s, env, MessageFieldAAD("thread-1", "message-2", "body"), ErrNotAuthentic},
		{"other field", s, env, MessageFieldAAD("thread-1", "message-1", "subject"), ErrNotAuthentic},
		{"other thread", s, env, MessageFieldAAD("thread-2", "message-1", "body"), ErrNotAuthentic},
		{"no aad", s, env, nil, ErrNotAuthentic},
		{"other key", otherSealer, env, aad, ErrNotAuthentic},
		{"empty", s, nil, aad, ErrNotAuthentic},
		{"truncated tag", s, env[:len(env)-1], aad, ErrNotAuthentic},
		{"header only", s, env[:2+5+12], aad, ErrNotAuthentic},
		{"unknown version", s, append([]byte{2}, env[1:]...), aad, ErrUnsupportedVersion},
		{"appended byte", s, append(bytes.Clone(env), 0), aad, ErrNotAuthentic},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.sealer.OpenRecord(tc.env, tc.aad)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("OpenRecord = %q, %v; want nil, %v", got, err, tc.want)
			}
		})
	}
	// Every single bit flip anywhere in the envelope is detected.
	for i := range len(env) * 8 {
		bad := bytes.Clone(env)
		bad[i/8] ^= 1 << (i % 8)
		if got, err := s.OpenRecord(bad, aad); err == nil {
			t.Fatalf("OpenRecord(bit %d flipped) = %q, nil; want an error", i, got)
		}
	}
}

func TestBindAADUnambiguous(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b []string
	}{
		{"moved boundary", []string{"ab", "c"}, []string{"a", "bc"}},
		{"extra empty part", []string{"a"}, []string{"a", ""}},
		{"separator in part", []string{"a|b"}, []string{"a", "b"}},
		{"none vs empty", nil, []string{""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if bytes.Equal(BindAAD(tc.a...), BindAAD(tc.b...)) {
				t.Fatalf("BindAAD(%q) == BindAAD(%q)", tc.a, tc.b)
			}
		})
	}
}

func TestNewRecordSealerRejects(t *testing.T) {
	t.Parallel()
	if _, err := NewRecordSealer(make([]byte, 16), "k"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("NewRecordSealer(16-byte key) error = %v, want ErrInvalidKey", err)
	}
	if _, err := NewRecordSealer(fixedKey(), strings.Repeat("x", 256)); err == nil {
		t.Error("NewRecordSealer(256-byte key ref) error = nil, want an error")
	}
}

func FuzzOpenRecord(f *testing.F) {
	env, aad := knownRecord(f)
	s := knownRecordSealer(f)
	seeds := [][]byte{env, env[:len(env)-1], {}, {1}, {1, 0}, {2, 0}, append([]byte{1, 255}, env[2:]...)}
	for _, seed := range seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := ParseEnvelope(data); err == nil {
			if int(data[1]) != len(p.KeyRef) || len(p.Nonce) != 12 || len(p.Ciphertext) < 16 {
				t.Fatalf("ParseEnvelope(%x) = inconsistent %+v", data, p)
			}
		}
		pt, err := s.OpenRecord(data, aad)
		if err == nil && !bytes.Equal(data, env) {
			t.Fatalf("OpenRecord(tampered %x) = %q, nil; want ErrNotAuthentic", data, pt)
		}
		if err != nil && pt != nil {
			t.Fatalf("OpenRecord returned plaintext with error %v", err)
		}
	})
}

func TestWriteRecordFuzzSeeds(t *testing.T) {
	env, _ := knownRecord(t)
	writeSeeds(t, "FuzzOpenRecord", env, env[:len(env)-1], []byte{}, []byte{1, 0}, []byte{2, 0})
}
