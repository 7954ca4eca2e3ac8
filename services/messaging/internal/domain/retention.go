package domain

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
)

// Retention is how long a thread of each category is kept after its last message.
type Retention map[commonv1.ThreadCategory]time.Duration

// ParseRetention reads "CATEGORY:PERIOD" pairs (PERIOD a Go duration or a whole number of
// days such as "2555d"); categories are named without the THREAD_CATEGORY_ prefix. Every
// category must be covered: a category without a period would be kept for ever, or purged at
// once, and neither is a safe default.
func ParseRetention(pairs map[string]string) (Retention, error) {
	out := Retention{}
	var problems []string
	for k, v := range pairs {
		c, ok := commonv1.ThreadCategory_value["THREAD_CATEGORY_"+strings.ToUpper(strings.TrimSpace(k))]
		if !ok || c == 0 {
			problems = append(problems, fmt.Sprintf("unknown category %q", k))
			continue
		}
		d, err := parsePeriod(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			problems = append(problems, fmt.Sprintf("category %s: period %q is not a positive duration", k, v))
			continue
		}
		out[commonv1.ThreadCategory(c)] = d
	}
	for c := range commonv1.ThreadCategory_name {
		if c != 0 {
			if _, ok := out[commonv1.ThreadCategory(c)]; !ok {
				problems = append(problems, "no retention period for "+strings.TrimPrefix(commonv1.ThreadCategory(c).String(), "THREAD_CATEGORY_"))
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("retention: %s", strings.Join(problems, "; "))
	}
	return out, nil
}

func parsePeriod(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// Cutoff is the instant before which a category's threads (by last message) are expired.
func (r Retention) Cutoff(c commonv1.ThreadCategory, asOf time.Time) (time.Time, bool) {
	d, ok := r[c]
	if !ok {
		return time.Time{}, false
	}
	return asOf.Add(-d), true
}

// LegalHold is one legal hold in force: over one thread (ThreadID) or over every thread of a
// patient (PatientID). Ids and a case reference only.
type LegalHold struct {
	ThreadID, PatientID string
	CaseReference       string
	// CreatedBySubject and CreatedAt say who placed the hold and when; empty and zero for holds
	// placed before the service recorded it.
	CreatedBySubject string
	CreatedAt        time.Time
}

// Cursor is the position of the hold in a listing: patient holds sort before thread holds.
func (h LegalHold) Cursor() LegalHoldCursor {
	if h.ThreadID != "" {
		return LegalHoldCursor{Thread: true, Key: h.ThreadID}
	}
	return LegalHoldCursor{Key: h.PatientID}
}

// LegalHoldCursor is a position in the listing of legal holds: the zero value is its start.
type LegalHoldCursor struct {
	// Thread is false in the patient holds, true in the thread holds that follow them.
	Thread bool
	// Key is the last patient id or thread id listed; "" before the first.
	Key string
}

// LegalHoldCounts count the legal holds in force.
type LegalHoldCounts struct {
	// ThreadsHeld are the threads a hold keeps, their own or their patient's.
	ThreadsHeld int64
	// PatientHolds and ThreadHolds count the holds of each kind.
	PatientHolds, ThreadHolds int64
}
