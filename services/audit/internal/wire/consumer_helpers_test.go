package wire_test

import (
	"io"
	"log/slog"

	"github.com/securemsg/securemsg/services/audit/internal/domain"
)

func parse(b []byte) ([]domain.Incoming, error) {
	in, err := domain.ParseIncoming(b)
	if err != nil {
		return nil, err
	}
	return []domain.Incoming{in}, nil
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
