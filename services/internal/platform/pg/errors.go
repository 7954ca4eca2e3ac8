package pg

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes the classification helpers look at (PostgreSQL appendix A).
const (
	codeUniqueViolation      = "23505"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	classConnectionException = "08"
	classInsufficientRes     = "53"
	codeAdminShutdown        = "57P01"
	codeCrashShutdown        = "57P02"
	codeCannotConnectNow     = "57P03"
	codeDatabaseDropped      = "57P04"
	codeReadOnlyTransaction  = "25006" // a replica promoted or demoted under us
)

// IsUniqueViolation reports whether err is a unique-constraint violation; when constraint is
// not empty, only a violation of that named constraint counts. Callers map it to AlreadyExists
// or treat it as "already done" for idempotent inserts.
func IsUniqueViolation(err error, constraint ...string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != codeUniqueViolation {
		return false
	}
	if len(constraint) == 0 {
		return true
	}
	for _, c := range constraint {
		if pgErr.ConstraintName == c {
			return true
		}
	}
	return false
}

// IsSerializationFailure reports whether err is a serialization failure or a detected deadlock:
// the transaction was rolled back by Postgres and may succeed if run again from the start.
func IsSerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == codeSerializationFailure || pgErr.Code == codeDeadlockDetected)
}

// IsUnavailable reports whether err means the database cannot be reached or is not accepting
// work right now (connection refused or lost, timeouts while talking to it, shutdown, too many
// connections, a read-only standby). Callers map it to gRPC Unavailable so clients retry later.
// Context cancellation by the caller is not "unavailable" and returns false.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, classConnectionException),
			strings.HasPrefix(pgErr.Code, classInsufficientRes),
			pgErr.Code == codeAdminShutdown, pgErr.Code == codeCrashShutdown,
			pgErr.Code == codeCannotConnectNow, pgErr.Code == codeDatabaseDropped,
			pgErr.Code == codeReadOnlyTransaction:
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr),
		pgconn.Timeout(err),
		pgconn.SafeToRetry(err),
		errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return true
	}
	// A closed pool or connection reports plain errors; treat them as unavailable too, since the
	// process is shutting down or lost its connection.
	msg := err.Error()
	return strings.Contains(msg, "closed pool") || strings.Contains(msg, "conn closed")
}
