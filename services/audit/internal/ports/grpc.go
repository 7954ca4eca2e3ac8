package ports

import (
	"context"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	"github.com/securemsg/securemsg/services/audit/internal/app"
)

// ExportChunkSize is the largest chunk an export response carries (the API's 1 MiB).
const ExportChunkSize = 1 << 20

// GRPC implements auditv1.AuditServiceServer over the use cases. Authentication and the
// rpc-level policy run in the server's guards; the use cases check roles again per record.
// Errors are returned as the use cases give them: their usererr values carry their own gRPC
// status, which the server's error interceptor sends.
type GRPC struct {
	auditv1.UnimplementedAuditServiceServer
	Svc *app.Service
}

// QueryAuditEvents implements the rpc.
func (g *GRPC) QueryAuditEvents(ctx context.Context, req *auditv1.QueryAuditEventsRequest) (*auditv1.QueryAuditEventsResponse, error) {
	return g.Svc.Query(ctx, req)
}

// ExportAuditEvents implements the rpc.
func (g *GRPC) ExportAuditEvents(req *auditv1.ExportAuditEventsRequest, stream auditv1.AuditService_ExportAuditEventsServer) error {
	sum, err := g.Svc.Export(stream.Context(), req, ExportChunkSize, func(chunk []byte) error {
		return stream.Send(&auditv1.ExportAuditEventsResponse{Chunk: chunk})
	})
	if err != nil {
		return err
	}
	return stream.Send(&auditv1.ExportAuditEventsResponse{Summary: sum})
}

// VerifyRange implements the rpc.
func (g *GRPC) VerifyRange(ctx context.Context, req *auditv1.VerifyRangeRequest) (*auditv1.VerifyRangeResponse, error) {
	return g.Svc.VerifyRange(ctx, req.GetFromSequence(), req.GetToSequence())
}

// GetLatestCheckpoint implements the rpc.
func (g *GRPC) GetLatestCheckpoint(ctx context.Context, _ *auditv1.GetLatestCheckpointRequest) (*auditv1.GetLatestCheckpointResponse, error) {
	cp, err := g.Svc.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	return &auditv1.GetLatestCheckpointResponse{Checkpoint: cp}, nil
}

// GetInclusionProof implements the rpc.
func (g *GRPC) GetInclusionProof(ctx context.Context, req *auditv1.GetInclusionProofRequest) (*auditv1.GetInclusionProofResponse, error) {
	return g.Svc.InclusionProof(ctx, req.GetSequence(), req.GetTreeSize())
}

// GetConsistencyProof implements the rpc.
func (g *GRPC) GetConsistencyProof(ctx context.Context, req *auditv1.GetConsistencyProofRequest) (*auditv1.GetConsistencyProofResponse, error) {
	return g.Svc.ConsistencyProof(ctx, req.GetFirstSize(), req.GetSecondSize())
}

// GetAccessReport implements the rpc.
func (g *GRPC) GetAccessReport(ctx context.Context, req *auditv1.GetAccessReportRequest) (*auditv1.GetAccessReportResponse, error) {
	return g.Svc.AccessReport(ctx, req)
}
