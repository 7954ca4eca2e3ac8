// Package exitcode maps securemsgctl's errors to the process exit status a script can act on.
// The codes are part of the CLI's contract (documented in `securemsgctl --help`):
//
//	0  OK
//	1  Failed: the command or the service failed (unavailable, another purge running, ...)
//	2  Usage: a bad flag, argument or value, found by the CLI or refused by the service as
//	   INVALID_ARGUMENT; also a destructive command run without --yes and without a terminal
//	   to confirm on
//	3  Refused: the service refused the caller (PERMISSION_DENIED, UNAUTHENTICATED), or Vault
//	   refused the keys commands' token
//	4  Not found: the service found no such object (NOT_FOUND), or Vault no such Transit key
//
// Errors from the commands' own checks are marked with Usage; service errors are read from their
// gRPC status, Vault's from the keys package's errors, wherever they are wrapped.
package exitcode

import (
	"errors"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/keys"
)

// The exit statuses of securemsgctl.
const (
	OK       = 0
	Failed   = 1
	BadUsage = 2
	Refused  = 3
	NotFound = 4
)

// Help is the table of exit statuses as the root command's help prints it.
const Help = `Exit status:
  0  ok
  1  failed (the command or the service failed; retry or read the message)
  2  usage (bad flag, argument or value, or INVALID_ARGUMENT from the service; a destructive
     command with neither --yes nor a terminal to confirm on)
  3  refused (PERMISSION_DENIED or UNAUTHENTICATED: the token's role, scope, MFA or age;
     for keys, Vault refusing its token)
  4  not found (NOT_FOUND from the service; for keys, no such Transit key)`

// usageError marks an error as the operator's mistake in calling the command.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Usage marks err as a usage error (exit status 2); nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// UsageArgs wraps a cobra argument check so that its errors are usage errors.
func UsageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return Usage(check(cmd, args)) }
}

// Of is the exit status for err: 0 for nil, the status of a usage error or of a gRPC status
// found anywhere in err's chain, and 1 for anything else.
func Of(err error) int {
	if err == nil {
		return OK
	}
	if errors.As(err, new(usageError)) {
		return BadUsage
	}
	switch {
	case errors.Is(err, keys.ErrKeyNotFound):
		return NotFound
	case errors.Is(err, keys.ErrPermissionDenied):
		return Refused
	}
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return Failed
	}
	switch se.GRPCStatus().Code() {
	case codes.InvalidArgument:
		return BadUsage
	case codes.PermissionDenied, codes.Unauthenticated:
		return Refused
	case codes.NotFound:
		return NotFound
	default:
		return Failed
	}
}
