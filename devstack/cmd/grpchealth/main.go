// Command grpchealth asks a gRPC server over (m)TLS for its health and exits 0 once it reports
// SERVING. It retries until -timeout passes, so the dev stack can use it as its wait loop:
//
//	grpchealth -addr 127.0.0.1:7001 -ca ca.pem -cert messaging.pem -key messaging-key.pem -timeout 30s
//
// Exit codes: 0 SERVING, 1 not serving or unreachable when the deadline passed, 2 bad usage.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7001", "server address host:port")
	caFile := flag.String("ca", ".tmp/stack/certs/ca.pem", "CA certificate that signed the server's certificate")
	certFile := flag.String("cert", "", "client certificate for mTLS (optional)")
	keyFile := flag.String("key", "", "client key for mTLS (optional)")
	serverName := flag.String("server-name", "", "name to verify the server certificate for (default: the host of -addr)")
	service := flag.String("service", "", "service name to check (empty: the server as a whole)")
	timeout := flag.Duration("timeout", 5*time.Second, "how long to keep trying")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Parse()

	creds, err := transportCredentials(*caFile, *certFile, *keyFile, *serverName)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpchealth:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	status, err := waitServing(ctx, *addr, *service, creds)
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpchealth: %s: %v\n", *addr, err)
		os.Exit(1)
	}
	if !*quiet {
		fmt.Printf("%s: %s\n", *addr, status)
	}
}

func transportCredentials(caFile, certFile, keyFile, serverName string) (credentials.TransportCredentials, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("-cert and -key go together")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}

// waitServing polls the health service until it answers SERVING or ctx ends; the last error or
// status explains a failure.
func waitServing(ctx context.Context, addr, service string, creds credentials.TransportCredentials) (healthpb.HealthCheckResponse_ServingStatus, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := client.Check(attemptCtx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return resp.GetStatus(), nil
		}
		if err == nil {
			err = fmt.Errorf("status %s", resp.GetStatus())
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-tick.C:
		}
	}
}
