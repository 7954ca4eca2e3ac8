package retentioncmd_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/retentioncmd"
)

func TestCategoryNames(t *testing.T) {
	t.Parallel()
	for v := range commonv1.ThreadCategory_name {
		c := commonv1.ThreadCategory(v)
		if c == 0 {
			continue
		}
		if got, err := retentioncmd.ParseCategory(retentioncmd.CategoryName(c)); err != nil || got != c {
			t.Errorf("ParseCategory(CategoryName(%v)) = %v, %v", c, got, err)
		}
	}
	for _, bad := range []string{"", "unspecified", "gossip"} {
		if _, err := retentioncmd.ParseCategory(bad); err == nil {
			t.Errorf("ParseCategory(%q) = nil error", bad)
		}
	}
}

// TestSum: a purge's calls add up, except the held threads, which every call counts again.
func TestSum(t *testing.T) {
	t.Parallel()
	general, billing := commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, commonv1.ThreadCategory_THREAD_CATEGORY_BILLING
	t0, t1, t2 := timestamppb.Now(), timestamppb.Now(), timestamppb.Now()
	calls := []*messagingv1.RunRetentionPurgeResponse{
		{Truncated: true, StartTime: t0, FinishTime: t1,
			ByCategory: []*messagingv1.RetentionCounts{{Category: general, ThreadsEligible: 2, ThreadsPurged: 2, MessagesPurged: 5, AttachmentsPurged: 1, ThreadsSkippedLegalHold: 3}},
			Total:      &messagingv1.RetentionCounts{ThreadsEligible: 2, ThreadsPurged: 2, MessagesPurged: 5, AttachmentsPurged: 1, ThreadsSkippedLegalHold: 3}},
		{StartTime: t1, FinishTime: t2,
			ByCategory: []*messagingv1.RetentionCounts{
				{Category: general, ThreadsEligible: 1, ThreadsPurged: 1, MessagesPurged: 1, ThreadsSkippedLegalHold: 3},
				{Category: billing, ThreadsEligible: 1, ThreadsPurged: 1, MessagesPurged: 2, ThreadsSkippedLegalHold: 1}},
			Total: &messagingv1.RetentionCounts{ThreadsEligible: 2, ThreadsPurged: 2, MessagesPurged: 3, ThreadsSkippedLegalHold: 4}},
	}
	want := &messagingv1.RunRetentionPurgeResponse{StartTime: t0, FinishTime: t2,
		ByCategory: []*messagingv1.RetentionCounts{
			{Category: general, ThreadsEligible: 3, ThreadsPurged: 3, MessagesPurged: 6, AttachmentsPurged: 1, ThreadsSkippedLegalHold: 3},
			{Category: billing, ThreadsEligible: 1, ThreadsPurged: 1, MessagesPurged: 2, ThreadsSkippedLegalHold: 1}},
		Total: &messagingv1.RetentionCounts{ThreadsEligible: 4, ThreadsPurged: 4, MessagesPurged: 8, AttachmentsPurged: 1, ThreadsSkippedLegalHold: 4}}
	if diff := cmp.Diff(want, retentioncmd.Sum(calls), protocmp.Transform()); diff != "" {
		t.Errorf("Sum(calls) mismatch (-want +got):\n%s", diff)
	}
}

func TestPeriodText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{{2555 * 24 * time.Hour, "2555d"}, {24 * time.Hour, "1d"}, {36 * time.Hour, "36h0m0s"}, {90 * time.Minute, "1h30m0s"}} {
		if got := retentioncmd.PeriodText(tc.in); got != tc.want {
			t.Errorf("PeriodText(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestPrintPolicy: the table names each category's period and cutoff, and the summary says how
// often the service purges by itself and how many threads the holds keep.
func TestPrintPolicy(t *testing.T) {
	t.Parallel()
	asOf := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r := &messagingv1.GetRetentionPolicyResponse{AsOf: timestamppb.New(asOf), PurgeInterval: durationpb.New(time.Hour),
		ThreadsOnLegalHold: 3, PatientLegalHolds: 1, ThreadLegalHolds: 1,
		Periods: []*messagingv1.RetentionPeriod{{Category: commonv1.ThreadCategory_THREAD_CATEGORY_APPOINTMENT, Period: durationpb.New(730 * 24 * time.Hour),
			CutoffTime: timestamppb.New(asOf.Add(-730 * 24 * time.Hour))}}}
	var out strings.Builder
	if err := retentioncmd.PrintPolicy(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"appointment", "730d", "2024-12-06T12:00:00Z", "purge job runs every 1h0m0s",
		"legal holds keep 3 threads (1 patient hold, 1 thread hold)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("PrintPolicy() = %q, want it to contain %q", out.String(), want)
		}
	}
}
