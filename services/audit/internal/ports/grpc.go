package ports

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
)

// ExportChunkSize is the largest chunk an export response carries (the API's 1 MiB).
const ExportChunkSize = 1 << 20

// GRPC implements auditv1.AuditServiceServer over the use cases: it decodes each request into
// domain values, calls the use case and encodes its answer. Authentication and the rpc-level
// policy run in the server's guards; the use cases check roles again per record. Errors are
// returned as the use cases give them: their usererr values carry their own gRPC status, which
// the server's error interceptor sends.
type GRPC struct {
	auditv1.UnimplementedAuditServiceServer
	svc *app.Service
}

// NewGRPC returns the gRPC handler of svc.
func NewGRPC(svc *app.Service) *GRPC { return &GRPC{svc: svc} }

// QueryAuditEvents implements the rpc.
func (g *GRPC) QueryAuditEvents(ctx context.Context, req *auditv1.QueryAuditEventsRequest) (*auditv1.QueryAuditEventsResponse, error) {
	page, err := g.svc.Query(ctx, domain.QueryRequest{Filter: filterOf(req.GetFilter()), PageSize: req.GetPageSize(),
		PageToken: req.GetPageToken(), NewestFirst: req.GetNewestFirst()})
	if err != nil {
		return nil, err
	}
	resp := &auditv1.QueryAuditEventsResponse{NextPageToken: page.NextPageToken}
	for _, e := range page.Entries {
		resp.Entries = append(resp.Entries, &auditv1.AuditEntry{Sequence: e.Sequence, Record: e.Record, RecordBytes: e.Bytes,
			LeafHash: e.Leaf, PrevChainHash: e.PrevChain, ChainHash: e.Chain, AppendTime: timestamppb.New(e.AppendedAt)})
	}
	return resp, nil
}

// ExportAuditEvents implements the rpc: the chunks, then the summary.
func (g *GRPC) ExportAuditEvents(req *auditv1.ExportAuditEventsRequest, stream auditv1.AuditService_ExportAuditEventsServer) error {
	sum, err := g.svc.Export(stream.Context(), domain.ExportRequest{Filter: filterOf(req.GetFilter()), Format: domain.ExportFormat(req.GetFormat())},
		ExportChunkSize, func(chunk []byte) error {
			return stream.Send(&auditv1.ExportAuditEventsResponse{Chunk: chunk})
		})
	if err != nil {
		return err
	}
	return stream.Send(&auditv1.ExportAuditEventsResponse{Summary: &auditv1.ExportSummary{RecordCount: sum.RecordCount,
		FirstSequence: sum.FirstSequence, LastSequence: sum.LastSequence, Sha256: sum.SHA256, Checkpoint: checkpointProto(sum.Checkpoint)}})
}

// VerifyRange implements the rpc.
func (g *GRPC) VerifyRange(ctx context.Context, req *auditv1.VerifyRangeRequest) (*auditv1.VerifyRangeResponse, error) {
	v, err := g.svc.VerifyRange(ctx, req.GetFromSequence(), req.GetToSequence())
	if err != nil {
		return nil, err
	}
	return &auditv1.VerifyRangeResponse{Ok: v.Ok, VerifiedCount: v.VerifiedCount, FirstFailingSequence: v.FirstFailingSequence,
		Failure: auditv1.VerifyFailure(v.Failure), Detail: v.Detail, Checkpoint: checkpointProto(v.Checkpoint), ToSequence: v.ToSequence}, nil
}

// GetLatestCheckpoint implements the rpc.
func (g *GRPC) GetLatestCheckpoint(ctx context.Context, _ *auditv1.GetLatestCheckpointRequest) (*auditv1.GetLatestCheckpointResponse, error) {
	cp, err := g.svc.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	return &auditv1.GetLatestCheckpointResponse{Checkpoint: checkpointProto(&cp)}, nil
}

// GetInclusionProof implements the rpc.
func (g *GRPC) GetInclusionProof(ctx context.Context, req *auditv1.GetInclusionProofRequest) (*auditv1.GetInclusionProofResponse, error) {
	p, err := g.svc.InclusionProof(ctx, req.GetSequence(), req.GetTreeSize())
	if err != nil {
		return nil, err
	}
	return &auditv1.GetInclusionProofResponse{LeafIndex: p.LeafIndex, TreeSize: p.TreeSize, LeafHash: p.LeafHash, Hashes: p.Hashes,
		Checkpoint: checkpointProto(p.Checkpoint)}, nil
}

// GetConsistencyProof implements the rpc.
func (g *GRPC) GetConsistencyProof(ctx context.Context, req *auditv1.GetConsistencyProofRequest) (*auditv1.GetConsistencyProofResponse, error) {
	p, err := g.svc.ConsistencyProof(ctx, req.GetFirstSize(), req.GetSecondSize())
	if err != nil {
		return nil, err
	}
	return &auditv1.GetConsistencyProofResponse{FirstSize: p.FirstSize, SecondSize: p.SecondSize, Hashes: p.Hashes}, nil
}

// GetAccessReport implements the rpc.
func (g *GRPC) GetAccessReport(ctx context.Context, req *auditv1.GetAccessReportRequest) (*auditv1.GetAccessReportResponse, error) {
	page, err := g.svc.AccessReport(ctx, domain.AccessReportRequest{PatientID: req.GetPatientId(), Start: timeOf(req.GetStartTime()),
		End: timeOf(req.GetEndTime()), PageSize: req.GetPageSize(), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, err
	}
	resp := &auditv1.GetAccessReportResponse{NextPageToken: page.NextPageToken}
	for _, e := range page.Entries {
		resp.Entries = append(resp.Entries, &auditv1.AccessReportEntry{
			AccessTime:       timestamppb.New(e.AccessTime),
			ActorRole:        e.ActorRole,
			OrganisationId:   e.OrganisationID,
			OrganisationName: e.OrganisationName,
			Action:           e.Action,
			RecordType:       e.RecordType,
			RecordId:         e.RecordID,
			PurposeOfUse:     e.PurposeOfUse,
			ActorDisplayName: e.ActorDisplayName,
		})
	}
	return resp, nil
}

// filterOf decodes an API filter (the use cases validate it).
func filterOf(f *auditv1.AuditEventFilter) domain.Filter {
	return domain.Filter{
		ActorSubject: f.GetActorSubject(), PatientID: f.GetPatientId(), RecordType: f.GetRecordType(), RecordID: f.GetRecordId(),
		Actions: f.GetActions(), Outcomes: f.GetOutcomes(), Start: timeOf(f.GetStartTime()), End: timeOf(f.GetEndTime()),
		FromSeq: f.GetFromSequence(), ToSeq: f.GetToSequence(), MinSeverity: f.GetMinSeverity(),
	}
}

// timeOf is an optional API time: the zero time when it is not set.
func timeOf(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

// checkpointProto encodes an optional checkpoint (nil stays nil).
func checkpointProto(c *domain.Checkpoint) *auditv1.Checkpoint {
	if c == nil {
		return nil
	}
	return &auditv1.Checkpoint{TreeSize: c.TreeSize, RootHash: c.Root, Signature: c.Signature, KeyId: c.KeyID,
		CreateTime: timestamppb.New(c.CreatedAt), SignedBody: c.SignedBody}
}
