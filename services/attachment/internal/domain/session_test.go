package domain_test

import (
	"errors"
	"testing"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

func TestByteRangeResolve(t *testing.T) {
	t.Parallel()
	const size = 1000
	tests := []struct {
		name         string
		r            domain.ByteRange
		off, n       int64
		want         error
		wantRangeErr bool
	}{
		{name: "whole", r: domain.ByteRange{}, off: 0, n: size},
		{name: "first bytes", r: domain.ByteRange{Length: 10}, off: 0, n: 10},
		{name: "middle", r: domain.ByteRange{Offset: 100, Length: 50}, off: 100, n: 50},
		{name: "cut at the end", r: domain.ByteRange{Offset: 990, Length: 50}, off: 990, n: 10},
		{name: "suffix", r: domain.ByteRange{Suffix: 10}, off: 990, n: 10},
		{name: "suffix longer than the file", r: domain.ByteRange{Suffix: 5000}, off: 0, n: size},
		{name: "at the end", r: domain.ByteRange{Offset: size}, want: usererr.ErrOutOfRange, wantRangeErr: true},
		{name: "negative", r: domain.ByteRange{Offset: -1}, want: usererr.ErrInvalidArgument},
		{name: "suffix with an offset", r: domain.ByteRange{Offset: 1, Suffix: 1}, want: usererr.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off, n, err := tt.r.Resolve(size)
			if tt.want != nil {
				var rangeErr *domain.RangeNotSatisfiableError
				if !errors.Is(err, tt.want) || errors.As(err, &rangeErr) != tt.wantRangeErr || (tt.wantRangeErr && rangeErr.Size != size) {
					t.Errorf("Resolve(%+v) error = %v, want %v", tt.r, err, tt.want)
				}
				return
			}
			if err != nil || off != tt.off || n != tt.n {
				t.Errorf("Resolve(%+v) = %d, %d, %v, want %d, %d", tt.r, off, n, err, tt.off, tt.n)
			}
		})
	}
}

func TestCheckChunk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		offset int64
		n      int
		size   int64
		reason string
	}{
		{name: "first chunk", offset: 0, n: 4096, size: 10000},
		{name: "whole small file", offset: 0, n: 100, size: 100},
		{name: "later chunk of any length", offset: 4096, n: 1, size: 10000},
		{name: "past the declared size", offset: 9000, n: 1001, size: 10000, reason: "CHUNK_BEYOND_DECLARED_SIZE"},
		{name: "first chunk too short to sniff", offset: 0, n: 100, size: 10000, reason: "FIRST_CHUNK_TOO_SHORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := domain.CheckChunk(tt.offset, tt.n, tt.size)
			var ue *usererr.Error
			switch {
			case tt.reason == "" && err != nil:
				t.Errorf("CheckChunk(%d, %d, %d) = %v, want nil", tt.offset, tt.n, tt.size, err)
			case tt.reason != "" && (!errors.As(err, &ue) || ue.ReasonOf() != tt.reason || ue.Kind != usererr.InvalidArgument):
				t.Errorf("CheckChunk(%d, %d, %d) = %v, want InvalidArgument %s", tt.offset, tt.n, tt.size, err, tt.reason)
			}
		})
	}
}

func TestOffsetMismatch(t *testing.T) {
	t.Parallel()
	err := error(domain.NewOffsetMismatch(5, 10))
	var m *domain.OffsetMismatchError
	if !errors.Is(err, usererr.ErrAborted) || !errors.As(err, &m) || m.Expected != 10 || m.UserError().ReasonOf() != "UPLOAD_OFFSET_MISMATCH" {
		t.Errorf("NewOffsetMismatch(5, 10) = %v, want an Aborted UPLOAD_OFFSET_MISMATCH expecting 10", err)
	}
}
