package wire

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
)

type verdictScanner struct {
	v   domain.Verdict
	err error
}

func (s verdictScanner) Scan(_ context.Context, r io.Reader) (domain.Verdict, error) {
	_, _ = io.Copy(io.Discard, r)
	return s.v, s.err
}

func TestInstrumentedScannerCountsOutcomes(t *testing.T) {
	t.Parallel()
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "scans_seconds"}, []string{"outcome"})
	for _, tc := range []struct {
		next    verdictScanner
		outcome string
	}{
		{verdictScanner{}, "clean"},
		{verdictScanner{v: domain.Verdict{Infected: true, Signature: "Eicar-Signature"}}, "infected"},
		{verdictScanner{err: errors.New("clamd: connect: refused")}, "error"},
	} {
		s := instrumentedScanner{next: tc.next, seconds: seconds}
		v, err := s.Scan(t.Context(), strings.NewReader("file"))
		if v != tc.next.v || !errors.Is(err, tc.next.err) {
			t.Errorf("Scan() = %+v, %v; want the wrapped scanner's %+v, %v", v, err, tc.next.v, tc.next.err)
		}
	}
	if n := testutil.CollectAndCount(seconds); n != 3 {
		t.Errorf("scan series = %d, want 3 (one per outcome; the signature is never a label)", n)
	}
	for _, outcome := range []string{"clean", "infected", "error"} {
		var m dto.Metric
		if err := seconds.WithLabelValues(outcome).(prometheus.Histogram).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetHistogram().GetSampleCount(); got != 1 {
			t.Errorf("outcome %s scans = %d, want 1", outcome, got)
		}
	}
}
