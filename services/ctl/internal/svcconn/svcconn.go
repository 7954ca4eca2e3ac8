// Package svcconn holds what securemsgctl's commands that call a securemsg service share: the
// flags naming the service, its CA and the operator's token file, and the dial that turns them
// into a TLS connection and a context carrying the token.
package svcconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
)

// Flags are a service connection's command-line flags.
type Flags struct {
	addr, caFile, serverName, tokenFile string
	timeout                             time.Duration
}

// Register adds the flags to cmd: service is the service's name in help texts, addr its default
// address, role whose token --token-file holds.
func (c *Flags) Register(cmd *cobra.Command, service, addr, role string, timeout time.Duration) {
	cmd.Flags().StringVar(&c.addr, "addr", addr, service+" service host:port")
	cmd.Flags().StringVar(&c.caFile, "ca", ".tmp/stack/certs/ca.pem", "CA certificate of the service's TLS certificate")
	cmd.Flags().StringVar(&c.serverName, "server-name", "", "name to verify the server certificate for (default: the host of --addr)")
	cmd.Flags().StringVar(&c.tokenFile, "token-file", "", "file holding "+role+"'s OIDC access token (kept out of the process list)")
	cmd.Flags().DurationVar(&c.timeout, "timeout", timeout, "overall deadline")
}

// Dial connects to the service and returns the connection with the context its calls use: ctx
// bounded by --timeout, carrying the --token-file token. done closes the connection and ends
// that context; the caller defers it.
func (c *Flags) Dial(ctx context.Context) (_ *grpc.ClientConn, _ context.Context, done func(), _ error) {
	caPEM, err := os.ReadFile(c.caFile)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, nil, nil, errors.New("no CA certificate in --ca file")
	}
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, ServerName: c.serverName}
	cc, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("dial %s: %w", c.addr, err)
	}
	if c.tokenFile != "" {
		tok, err := os.ReadFile(c.tokenFile)
		if err != nil {
			_ = cc.Close()
			return nil, nil, nil, fmt.Errorf("read token: %w", err)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	return cc, ctx, func() { cancel(); _ = cc.Close() }, nil
}

// Admin is an administrator's connection to the messaging service, for the commands that
// manage its directory (pools, apps): the connection flags, on every subcommand, and --json.
type Admin struct {
	Flags
	// JSON prints protojson instead of a table.
	JSON bool
}

// Register adds the connection flags and --json to cmd and its subcommands, with a --timeout
// of a minute.
func (a *Admin) Register(cmd *cobra.Command) { a.RegisterTimeout(cmd, time.Minute) }

// RegisterTimeout is Register with another default --timeout, for commands whose calls run
// long (a retention purge).
func (a *Admin) RegisterTimeout(cmd *cobra.Command, timeout time.Duration) {
	a.Flags.Register(cmd, "messaging", "127.0.0.1:7001", "an administrator", timeout)
	cmd.PersistentFlags().AddFlagSet(cmd.Flags())
	cmd.PersistentFlags().BoolVar(&a.JSON, "json", false, "print protojson instead of a table")
}

// Call dials the messaging service and runs fn with its client.
func (a *Admin) Call(ctx context.Context, fn func(ctx context.Context, api messagingv1.MessagingServiceClient) error) error {
	cc, ctx, done, err := a.Dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	return fn(ctx, messagingv1.NewMessagingServiceClient(cc))
}

// PrintJSON writes each message as one line of protojson (the --json output).
func PrintJSON[M proto.Message](w io.Writer, msgs []M) error {
	for _, m := range msgs {
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintln(w, string(b))
	}
	return nil
}
