package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

// clientKeepaliveTime is how often an idle client pings; it must stay above the server's
// keepaliveMinTime or servers answer with GOAWAY.
const clientKeepaliveTime = 30 * time.Second

// Dial returns a client connection to another securemsg service over mTLS: it presents the
// client certificate from cfg (re-read when the files change), trusts only cfg.CAFile for the
// server's certificate and checks cfg.ServerName (default: the host in cfg.Addr). The request
// id in the caller's context is forwarded as x-request-id, so one id follows a request across
// services, and so does the trace context when tracing is on (package tracing). Like
// grpc.NewClient, it does not connect until the first rpc. Extra options are appended.
func Dial(cfg config.Client, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if cfg.Addr == "" || cfg.CertFile == "" || cfg.KeyFile == "" || cfg.CAFile == "" {
		return nil, errors.New("grpcserver: Dial needs Addr, CertFile, KeyFile and CAFile")
	}
	kp, err := newKeyPairReloader(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	roots, err := loadCAPool(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		ServerName: cfg.ServerName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.get()
		},
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                clientKeepaliveTime,
			Timeout:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.WithChainUnaryInterceptor(unaryClientRequestID),
		grpc.WithChainStreamInterceptor(streamClientRequestID),
	}
	if tracing.Enabled(os.Getenv) {
		base = append(base, clientTracing())
	}
	conn, err := grpc.NewClient(cfg.Addr, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("grpcserver: dial %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

// outgoingWithRequestID forwards the current request id to the peer.
func outgoingWithRequestID(ctx context.Context) context.Context {
	id := logging.RequestID(ctx)
	if id == "" {
		return ctx
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(RequestIDHeader)) > 0 {
		return ctx // the caller set one explicitly
	}
	return metadata.AppendToOutgoingContext(ctx, RequestIDHeader, id)
}

func unaryClientRequestID(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(outgoingWithRequestID(ctx), method, req, reply, cc, opts...)
}

func streamClientRequestID(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(outgoingWithRequestID(ctx), desc, cc, method, opts...)
}
