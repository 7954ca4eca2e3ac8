package retentioncmd_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
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
