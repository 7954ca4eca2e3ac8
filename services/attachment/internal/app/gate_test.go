package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// TestGateHoldsTheLastByte checks that the object store gets every byte but the last while the
// upload's row is not committed, the last one once it is, and an error instead if it failed.
func TestGateHoldsTheLastByte(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("x"), 1000)
	tests := []struct {
		name    string
		insert  error
		wantErr bool
	}{
		{name: "row committed", insert: nil},
		{name: "row refused", insert: errors.New("over quota"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ins := &rowInsert{done: make(chan struct{})}
			g := &gate{r: bytes.NewReader(data), left: int64(len(data)), ctx: t.Context(), open: ins}
			head := make([]byte, len(data)-1)
			if _, err := io.ReadFull(g, head); err != nil {
				t.Fatalf("reading all but the last byte = %v", err)
			}
			got := make(chan error, 1)
			go func() {
				_, err := io.ReadFull(g, make([]byte, 1))
				got <- err
			}()
			select {
			case err := <-got:
				t.Fatalf("the last byte passed before the row was committed (err %v)", err)
			default:
			}
			ins.err = tt.insert
			close(ins.done)
			if err := <-got; (err != nil) != tt.wantErr || (tt.wantErr && !errors.Is(err, tt.insert)) {
				t.Fatalf("reading the last byte after the insert (%v) = %v, want error %v", tt.insert, err, tt.wantErr)
			}
		})
	}
	// A cancelled upload stops waiting.
	ctx, cancel := context.WithCancel(t.Context())
	g := &gate{r: bytes.NewReader([]byte("a")), left: 1, ctx: ctx, open: &rowInsert{done: make(chan struct{})}}
	cancel()
	if _, err := g.Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel = %v, want context.Canceled", err)
	}
}
