package domain_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
)

var t0 = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

func access(sec int, actor, patient string, action eventsv1.Action, outcome eventsv1.Outcome) *eventsv1.AuditRecord {
	return &eventsv1.AuditRecord{
		Meta:   &eventsv1.EventMeta{OccurredAt: timestamppb.New(t0.Add(time.Duration(sec) * time.Second))},
		Actor:  &eventsv1.AuditActor{Subject: actor, Role: commonv1.Role_ROLE_CLINICIAN},
		Action: action, Outcome: outcome, PatientId: patient, PoolId: "pool-a", ReasonCode: "pool_member",
	}
}

func TestDetectorRules(t *testing.T) {
	t.Parallel()
	rules := domain.DefaultAnomalyRules()
	rules.BulkRead.MaxPatients, rules.BulkRead.Window = 3, domain.Duration(time.Minute)
	rules.Denials.MaxDenials, rules.Denials.Window = 2, domain.Duration(time.Minute)
	rules.OutsidePool.ActorPools = map[string][]string{"listed": {"pool-b"}}
	read, deny := eventsv1.Action_ACTION_READ, eventsv1.Action_ACTION_DENY
	ok, denied := eventsv1.Outcome_OUTCOME_SUCCESS, eventsv1.Outcome_OUTCOME_DENIED
	tests := []struct {
		name string
		recs []*eventsv1.AuditRecord
		want []string // rule fired per record, "" for none
	}{
		{"bulk read fires once over threshold", []*eventsv1.AuditRecord{
			access(0, "a", "p1", read, ok), access(1, "a", "p2", read, ok), access(2, "a", "p3", read, ok),
			access(3, "a", "p4", read, ok), access(4, "a", "p5", read, ok)},
			[]string{"", "", "", domain.RuleBulkRead, ""}},
		{"same patients do not count", []*eventsv1.AuditRecord{
			access(0, "a", "p1", read, ok), access(1, "a", "p1", read, ok), access(2, "a", "p2", read, ok), access(3, "a", "p2", read, ok)},
			[]string{"", "", "", ""}},
		{"window slides", []*eventsv1.AuditRecord{
			access(0, "a", "p1", read, ok), access(30, "a", "p2", read, ok), access(61, "a", "p3", read, ok), access(100, "a", "p4", read, ok)},
			[]string{"", "", "", ""}},
		{"denials burst", []*eventsv1.AuditRecord{
			access(0, "d", "p1", deny, denied), access(1, "d", "p1", deny, denied), access(2, "d", "p1", deny, denied)},
			[]string{"", "", domain.RuleDenials}},
		{"break glass", []*eventsv1.AuditRecord{func() *eventsv1.AuditRecord {
			r := access(0, "g", "p1", eventsv1.Action_ACTION_BREAK_GLASS, ok)
			r.ReasonCode = "break_glass"
			return r
		}()}, []string{domain.RuleBreakGlass}}, // break-the-glass has its own rule, not also "outside pool"
		{"outside listed pools", []*eventsv1.AuditRecord{access(0, "listed", "p1", read, ok)}, []string{domain.RuleOutsidePool}},
		{"outside by reason code", []*eventsv1.AuditRecord{func() *eventsv1.AuditRecord {
			r := access(0, "x", "p1", read, ok)
			r.ReasonCode = "admin_override"
			return r
		}()}, []string{domain.RuleOutsidePool}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := domain.NewDetector(rules)
			for i, r := range tt.recs {
				got := ""
				for j, a := range d.Observe(uint64(i+1), r) {
					if j > 0 {
						got += ","
					}
					got += a.RuleID
				}
				if got != tt.want[i] {
					t.Errorf("Observe(record %d) = %q, want %q", i+1, got, tt.want[i])
				}
			}
			// A retried batch (same sequences) fires nothing new.
			for i, r := range tt.recs {
				if a := d.Observe(uint64(i+1), r); len(a) != 0 {
					t.Errorf("Observe(record %d again) = %v, want nothing", i+1, a)
				}
			}
		})
	}
	if err := (domain.AnomalyRules{BulkRead: struct {
		Enabled     bool            `json:"enabled"`
		MaxPatients int             `json:"max_patients"`
		Window      domain.Duration `json:"window"`
	}{Enabled: true}}).Validate(); err == nil {
		t.Error("Validate(bulk_read without threshold) = nil, want error")
	}
	shipped, err := os.ReadFile("../../anomaly-rules.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := domain.ParseAnomalyRules(shipped); err != nil {
		t.Errorf("ParseAnomalyRules(shipped file) error = %v", err)
	}
}

// at builds a successful record by actor in role about patient at a UTC time.
func at(when time.Time, actor string, role commonv1.Role, patient string, action eventsv1.Action) *eventsv1.AuditRecord {
	return &eventsv1.AuditRecord{
		Meta:   &eventsv1.EventMeta{OccurredAt: timestamppb.New(when)},
		Actor:  &eventsv1.AuditActor{Subject: actor, Role: role},
		Action: action, Outcome: eventsv1.Outcome_OUTCOME_SUCCESS, PatientId: patient, PoolId: "pool-a", ReasonCode: "pool_member",
		RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD,
	}
}

// burst is n records made by mk(i), one a second from start.
func burst(start time.Time, n int, mk func(when time.Time) *eventsv1.AuditRecord) []*eventsv1.AuditRecord {
	out := make([]*eventsv1.AuditRecord, 0, n)
	for i := range n {
		out = append(out, mk(start.Add(time.Duration(i)*time.Second)))
	}
	return out
}

// fired runs recs through a new detector for rules and returns the rules fired per record
// ("" for none, "a,b" for two); a second pass with the same sequences must fire nothing.
func fired(t *testing.T, rules domain.AnomalyRules, recs []*eventsv1.AuditRecord) []string {
	t.Helper()
	if err := rules.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	d := domain.NewDetector(rules)
	out := make([]string, len(recs))
	for i, r := range recs {
		var ids []string
		for _, a := range d.Observe(uint64(i+1), r) {
			ids = append(ids, a.RuleID)
		}
		out[i] = strings.Join(ids, ",")
	}
	for i, r := range recs {
		if a := d.Observe(uint64(i+1), r); len(a) != 0 {
			t.Errorf("Observe(record %d again) = %v, want nothing", i+1, a)
		}
	}
	return out
}

// want is n empty strings with rule at the given (0-based) positions.
func want(n int, rule string, at ...int) []string {
	out := make([]string, n)
	for _, i := range at {
		out[i] = rule
	}
	return out
}

// TestOffHoursRule: more than max_reads care-team reads in the window outside the working
// hours fire off_hours once per window; in-hours reads, a burst just under the threshold and
// patients' and proxies' own access do not.
func TestOffHoursRule(t *testing.T) {
	t.Parallel()
	rules := domain.DefaultAnomalyRules()
	rules.OffHours.Enabled, rules.OffHours.TimeZone, rules.OffHours.MaxReads = true, "Europe/London", 3
	read := eventsv1.Action_ACTION_READ
	clin, staff := commonv1.Role_ROLE_CLINICIAN, commonv1.Role_ROLE_STAFF
	night := time.Date(2026, 6, 2, 2, 0, 0, 0, time.UTC)  // Tuesday 03:00 BST
	day := time.Date(2026, 6, 2, 10, 0, 0, 0, time.UTC)   // Tuesday 11:00 BST
	sat := time.Date(2026, 6, 6, 12, 0, 0, 0, time.UTC)   // Saturday 13:00 BST
	late := time.Date(2026, 6, 2, 18, 0, 0, 0, time.UTC)  // Tuesday 19:00 BST: the end is off hours
	early := time.Date(2026, 6, 2, 5, 59, 0, 0, time.UTC) // Tuesday 06:59 BST
	by := func(actor string, role commonv1.Role, patient string) func(time.Time) *eventsv1.AuditRecord {
		return func(when time.Time) *eventsv1.AuditRecord { return at(when, actor, role, patient, read) }
	}
	tests := []struct {
		name  string
		rules func(*domain.AnomalyRules)
		recs  []*eventsv1.AuditRecord
		want  []string
	}{
		{"a night burst fires once", nil, burst(night, 8, by("nurse", staff, "p1")), want(8, domain.RuleOffHours, 3)},
		{"just under the threshold", nil, burst(night, 3, by("nurse", staff, "p1")), want(3, "")},
		{"in hours", nil, burst(day, 8, by("doc", clin, "p1")), want(8, "")},
		{"the end of the day is off hours", nil, burst(late, 4, by("doc", clin, "p1")), want(4, domain.RuleOffHours, 3)},
		{"before the start is off hours", nil, burst(early, 4, by("doc", clin, "p1")), want(4, domain.RuleOffHours, 3)},
		{"weekends are off hours", nil, burst(sat, 4, by("doc", clin, "p1")), want(4, domain.RuleOffHours, 3)},
		{"weekends as working days", func(r *domain.AnomalyRules) { r.OffHours.Weekends = false },
			burst(sat, 4, by("doc", clin, "p1")), want(4, "")},
		{"a patient's own night reads", nil, burst(night, 8, by("p1", commonv1.Role_ROLE_PATIENT, "p1")), want(8, "")},
		{"a proxy's night reads", nil, burst(night, 8, by("parent", commonv1.Role_ROLE_PROXY, "p1")), want(8, "")},
		{"records about no patient", nil, burst(night, 8, by("doc", clin, "")), want(8, "")},
		{"actors are counted apart", nil, append(burst(night, 3, by("a", clin, "p1")), burst(night.Add(time.Minute), 3, by("b", clin, "p1"))...), want(6, "")},
		{"denied reads are not reads", nil, func() []*eventsv1.AuditRecord {
			recs := burst(night, 8, by("doc", clin, "p1"))
			for _, r := range recs {
				r.Outcome = eventsv1.Outcome_OUTCOME_DENIED
			}
			return recs
		}(), want(8, "")},
		{"the window slides", nil, []*eventsv1.AuditRecord{
			at(night, "doc", clin, "p1", read), at(night.Add(25*time.Minute), "doc", clin, "p1", read),
			at(night.Add(50*time.Minute), "doc", clin, "p1", read), at(night.Add(75*time.Minute), "doc", clin, "p1", read),
			at(night.Add(100*time.Minute), "doc", clin, "p1", read)}, want(5, "")},
		{"after the cool-down a new burst fires again", nil,
			append(burst(night, 5, by("doc", clin, "p1")), burst(night.Add(61*time.Minute), 5, by("doc", clin, "p1"))...),
			want(10, domain.RuleOffHours, 3, 8)},
		{"working hours past midnight", func(r *domain.AnomalyRules) {
			r.OffHours.Start, r.OffHours.End, r.OffHours.Weekends = "22:00", "06:00", false
		}, append(burst(night, 4, by("night-doc", clin, "p1")), burst(day, 4, by("day-doc", clin, "p1"))...),
			want(8, domain.RuleOffHours, 7)},
		{"disabled", func(r *domain.AnomalyRules) { r.OffHours.Enabled = false }, burst(night, 8, by("nurse", staff, "p1")), want(8, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rules
			if tt.rules != nil {
				tt.rules(&r)
			}
			if got := fired(t, r, tt.recs); !slices.Equal(got, tt.want) {
				t.Errorf("rules fired = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestOffHoursFollowsTheZonesClock: the working hours are the zone's wall clock, so across
// the daylight-saving changes of Europe/London the same UTC instant is in or off hours.
func TestOffHoursFollowsTheZonesClock(t *testing.T) {
	t.Parallel()
	rules := domain.DefaultAnomalyRules()
	rules.OffHours.Enabled, rules.OffHours.TimeZone, rules.OffHours.Weekends, rules.OffHours.MaxReads = true, "Europe/London", false, 1
	tests := []struct {
		utc  string
		off  bool
		note string
	}{
		{"2026-03-27T06:30:00Z", true, "Friday 06:30 GMT, before the change"},
		{"2026-03-30T06:30:00Z", false, "Monday 07:30 BST, after the change"},
		{"2026-03-27T18:30:00Z", false, "Friday 18:30 GMT"},
		{"2026-03-30T18:30:00Z", true, "Monday 19:30 BST"},
		{"2026-03-29T00:30:00Z", true, "Sunday 00:30 GMT, the night of the change"},
		{"2026-03-29T01:30:00Z", true, "Sunday 02:30 BST, just after it"},
		{"2026-10-23T06:30:00Z", false, "Friday 07:30 BST, before the change back"},
		{"2026-10-26T06:30:00Z", true, "Monday 06:30 GMT, after it"},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			t.Parallel()
			when, err := time.Parse(time.RFC3339, tt.utc)
			if err != nil {
				t.Fatal(err)
			}
			// Two reads: with max_reads 1 the second fires when both are off hours.
			mk := func(when time.Time) *eventsv1.AuditRecord {
				return at(when, "doc", commonv1.Role_ROLE_CLINICIAN, "p1", eventsv1.Action_ACTION_READ)
			}
			got := fired(t, rules, burst(when, 2, mk))
			if w := want(2, domain.RuleOffHours, 1); tt.off != slices.Equal(got, w) {
				t.Errorf("reads at %s (%s): rules fired = %q, want off hours %v", tt.utc, tt.note, got, tt.off)
			}
		})
	}
}

// TestRecordOfInterestRule: a read of a listed patient's record by anyone but the patient,
// their proxies and the suite's services fires once per actor and patient per cool-down.
func TestRecordOfInterestRule(t *testing.T) {
	t.Parallel()
	rules := domain.DefaultAnomalyRules()
	rules.RecordOfInterest.PatientIDs = []string{"vip-1", "vip-2"}
	read, dl := eventsv1.Action_ACTION_READ, eventsv1.Action_ACTION_DOWNLOAD
	clin := commonv1.Role_ROLE_CLINICIAN
	roi := domain.RuleRecordOfInterest
	tests := []struct {
		name  string
		rules func(*domain.AnomalyRules)
		recs  []*eventsv1.AuditRecord
		want  []string
	}{
		{"a burst of reads fires once, again after the cool-down", nil, []*eventsv1.AuditRecord{
			at(t0, "nosy", clin, "vip-1", read), at(t0.Add(time.Second), "nosy", clin, "vip-1", read),
			at(t0.Add(2*time.Second), "nosy", clin, "vip-1", dl), at(t0.Add(59*time.Minute), "nosy", clin, "vip-1", read),
			at(t0.Add(61*time.Minute), "nosy", clin, "vip-1", read)}, want(5, roi, 0, 4)},
		{"each patient of interest and each actor apart", nil, []*eventsv1.AuditRecord{
			at(t0, "nosy", clin, "vip-1", read), at(t0.Add(time.Second), "nosy", clin, "vip-2", read),
			at(t0.Add(2*time.Second), "other", commonv1.Role_ROLE_STAFF, "vip-1", read),
			at(t0.Add(3*time.Second), "nosy", clin, "vip-2", read)}, want(4, roi, 0, 1, 2)},
		{"an unlisted patient", nil, []*eventsv1.AuditRecord{at(t0, "nosy", clin, "p-1", read)}, want(1, "")},
		{"the patient themself", nil, []*eventsv1.AuditRecord{at(t0, "vip-1", commonv1.Role_ROLE_PATIENT, "vip-1", read)}, want(1, "")},
		{"an employee-patient reading their own record at work", nil, []*eventsv1.AuditRecord{at(t0, "vip-1", clin, "vip-1", read)}, want(1, "")},
		{"a proxy", nil, []*eventsv1.AuditRecord{at(t0, "parent", commonv1.Role_ROLE_PROXY, "vip-1", read)}, want(1, "")},
		{"a service", nil, []*eventsv1.AuditRecord{at(t0, "spiffe://securemsg/notification", commonv1.Role_ROLE_SERVICE, "vip-1", read)}, want(1, "")},
		{"a denied read", nil, func() []*eventsv1.AuditRecord {
			r := at(t0, "nosy", clin, "vip-1", eventsv1.Action_ACTION_DENY)
			r.Outcome = eventsv1.Outcome_OUTCOME_DENIED
			return []*eventsv1.AuditRecord{r}
		}(), want(1, "")},
		{"a change is not a read", nil, []*eventsv1.AuditRecord{at(t0, "nosy", clin, "vip-1", eventsv1.Action_ACTION_UPDATE)}, want(1, "")},
		{"break-the-glass into a record of interest", nil, []*eventsv1.AuditRecord{at(t0, "er", clin, "vip-1", eventsv1.Action_ACTION_BREAK_GLASS)},
			[]string{domain.RuleBreakGlass + "," + roi}},
		{"a shorter cool-down", func(r *domain.AnomalyRules) { r.RecordOfInterest.CoolDown = domain.Duration(time.Minute) },
			[]*eventsv1.AuditRecord{at(t0, "nosy", clin, "vip-1", read), at(t0.Add(2*time.Minute), "nosy", clin, "vip-1", read)},
			want(2, roi, 0, 1)},
		{"disabled", func(r *domain.AnomalyRules) { r.RecordOfInterest.Enabled = false },
			[]*eventsv1.AuditRecord{at(t0, "nosy", clin, "vip-1", read)}, want(1, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rules
			if tt.rules != nil {
				tt.rules(&r)
			}
			if got := fired(t, r, tt.recs); !slices.Equal(got, tt.want) {
				t.Errorf("rules fired = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestBreakGlassFrequencyRule: more than max_uses break-the-glass accesses by one actor in
// the window fire break_glass_frequency once per window, beside break_glass for each use.
func TestBreakGlassFrequencyRule(t *testing.T) {
	t.Parallel()
	rules := domain.DefaultAnomalyRules()
	rules.BreakGlassFrequency.MaxUses = 2
	bg, freq := domain.RuleBreakGlass, domain.RuleBreakGlass+","+domain.RuleBreakGlassFrequency
	glass := func(actor string) func(time.Time) *eventsv1.AuditRecord {
		return func(when time.Time) *eventsv1.AuditRecord {
			r := at(when, actor, commonv1.Role_ROLE_CLINICIAN, "p1", eventsv1.Action_ACTION_BREAK_GLASS)
			r.ReasonCode = "break_glass"
			return r
		}
	}
	glassAt := func(actor string, offsets ...time.Duration) []*eventsv1.AuditRecord {
		var out []*eventsv1.AuditRecord
		for _, o := range offsets {
			out = append(out, glass(actor)(t0.Add(o)))
		}
		return out
	}
	tests := []struct {
		name  string
		rules func(*domain.AnomalyRules)
		recs  []*eventsv1.AuditRecord
		want  []string
	}{
		{"a burst fires once", nil, burst(t0, 5, glass("er")), []string{bg, bg, freq, bg, bg}},
		{"just under the threshold", nil, burst(t0, 2, glass("er")), []string{bg, bg}},
		{"spread beyond the window", nil, glassAt("er", 0, 5*time.Hour, 9*time.Hour), []string{bg, bg, bg}},
		{"after the cool-down a new burst fires again", nil,
			glassAt("er", 0, time.Second, 2*time.Second, 8*time.Hour+10*time.Second, 8*time.Hour+11*time.Second, 8*time.Hour+12*time.Second),
			[]string{bg, bg, freq, bg, bg, freq}},
		{"actors are counted apart", nil, append(burst(t0, 2, glass("a")), burst(t0.Add(time.Minute), 2, glass("b"))...), []string{bg, bg, bg, bg}},
		{"without the per-use rule", func(r *domain.AnomalyRules) { r.BreakGlass.Enabled = false },
			burst(t0, 4, glass("er")), want(4, domain.RuleBreakGlassFrequency, 2)},
		{"disabled", func(r *domain.AnomalyRules) { r.BreakGlassFrequency.Enabled = false }, burst(t0, 4, glass("er")), []string{bg, bg, bg, bg}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rules
			if tt.rules != nil {
				tt.rules(&r)
			}
			if got := fired(t, r, tt.recs); !slices.Equal(got, tt.want) {
				t.Errorf("rules fired = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestNewRulesConfig: the rules file sets the new rules (off_hours' hours inline), refuses
// nonsense and unknown fields, and the shipped file parses with off_hours enabled too.
func TestNewRulesConfig(t *testing.T) {
	t.Parallel()
	r, err := domain.ParseAnomalyRules([]byte(`{
		"off_hours": {"enabled": true, "start": "08:30", "end": "18:00", "time_zone": "America/New_York", "weekends": false, "max_reads": 5, "window": "30m"},
		"record_of_interest": {"enabled": true, "patient_ids": ["vip-1"], "cool_down": "2h"},
		"break_glass_frequency": {"enabled": true, "max_uses": 4, "window": "12h"}}`))
	if err != nil {
		t.Fatalf("ParseAnomalyRules() error = %v", err)
	}
	oh := r.OffHours
	if !oh.Enabled || oh.Start != "08:30" || oh.End != "18:00" || oh.TimeZone != "America/New_York" || oh.Weekends ||
		oh.MaxReads != 5 || oh.Window != domain.Duration(30*time.Minute) {
		t.Errorf("off_hours = %+v", oh)
	}
	if !slices.Equal(r.RecordOfInterest.PatientIDs, []string{"vip-1"}) || r.RecordOfInterest.CoolDown != domain.Duration(2*time.Hour) {
		t.Errorf("record_of_interest = %+v", r.RecordOfInterest)
	}
	if r.BreakGlassFrequency.MaxUses != 4 || r.BreakGlassFrequency.Window != domain.Duration(12*time.Hour) {
		t.Errorf("break_glass_frequency = %+v", r.BreakGlassFrequency)
	}
	if !r.BulkRead.Enabled || r.BulkRead.MaxPatients != 50 {
		t.Errorf("bulk_read = %+v, want the default kept", r.BulkRead)
	}
	// 08:00 in New York (12:00 UTC in summer) is before the start.
	mk := func(when time.Time) *eventsv1.AuditRecord {
		return at(when, "doc", commonv1.Role_ROLE_CLINICIAN, "p1", eventsv1.Action_ACTION_READ)
	}
	if got := fired(t, r, burst(time.Date(2026, 6, 2, 12, 0, 0, 0, time.UTC), 6, mk)); !slices.Equal(got, want(6, domain.RuleOffHours, 5)) {
		t.Errorf("reads at 08:00 New York: rules fired = %q, want off_hours on the sixth", got)
	}
	if got := fired(t, r, burst(time.Date(2026, 6, 2, 13, 0, 0, 0, time.UTC), 6, mk)); !slices.Equal(got, want(6, "")) {
		t.Errorf("reads at 09:00 New York: rules fired = %q, want none", got)
	}

	for _, bad := range []string{
		`{"off_hours": {"enabled": true, "time_zone": "Europe/London", "max_reads": 0}}`,
		`{"off_hours": {"enabled": true, "time_zone": "Europe/London", "window": "0s"}}`,
		`{"off_hours": {"enabled": true, "time_zone": "Europe/London", "start": "7am"}}`,
		`{"off_hours": {"enabled": true, "time_zone": "Europe/London", "end": "25:00"}}`,
		`{"off_hours": {"enabled": true, "time_zone": "Europe/London", "start": "07:00", "end": "07:00"}}`,
		`{"off_hours": {"enabled": true, "time_zone": "Mars/Olympus_Mons"}}`,
		`{"off_hours": {"enabled": true, "time_zone": ""}}`,
		`{"off_hours": {"enabled": true, "time_zone": "Local"}}`,
		`{"off_hours": {"enabled": true, "timezone": "Europe/London"}}`,
		`{"record_of_interest": {"enabled": true, "cool_down": "0s"}}`,
		`{"record_of_interest": {"enabled": true, "patient_ids": ["vip-1", ""]}}`,
		`{"break_glass_frequency": {"enabled": true, "max_uses": 0}}`,
		`{"break_glass_frequency": {"enabled": true, "window": "-1h"}}`,
		`{"break_glass_frequncy": {"enabled": true}}`,
	} {
		if _, err := domain.ParseAnomalyRules([]byte(bad)); err == nil {
			t.Errorf("ParseAnomalyRules(%s) = nil error, want one", bad)
		}
	}

	shipped, err := os.ReadFile("../../anomaly-rules.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err = domain.ParseAnomalyRules(shipped)
	if err != nil {
		t.Fatalf("ParseAnomalyRules(shipped file) error = %v", err)
	}
	r.OffHours.Enabled = true
	if err := r.Validate(); err != nil {
		t.Errorf("shipped file with off_hours enabled: Validate() = %v", err)
	}
	if err := domain.DefaultAnomalyRules().Validate(); err != nil {
		t.Errorf("DefaultAnomalyRules().Validate() = %v", err)
	}
	def := domain.DefaultAnomalyRules()
	def.OffHours.Enabled = true
	if err := def.Validate(); err != nil {
		t.Errorf("defaults with off_hours enabled: Validate() = %v", err)
	}
}

// TestLongestWindowCoversNewRules: a restart replays enough log for the new rules' windows
// and record_of_interest's cool-down (when it lists patients).
func TestLongestWindowCoversNewRules(t *testing.T) {
	t.Parallel()
	r := domain.DefaultAnomalyRules()
	if got := r.LongestWindow(); got != 8*time.Hour {
		t.Errorf("defaults: LongestWindow() = %v, want 8h (break_glass_frequency)", got)
	}
	r.OffHours.Enabled, r.OffHours.Window = true, domain.Duration(10*time.Hour)
	if got := r.LongestWindow(); got != 10*time.Hour {
		t.Errorf("off_hours 10h: LongestWindow() = %v, want 10h", got)
	}
	r.RecordOfInterest.CoolDown = domain.Duration(24 * time.Hour)
	if got := r.LongestWindow(); got != 10*time.Hour {
		t.Errorf("record_of_interest listing nobody: LongestWindow() = %v, want 10h", got)
	}
	r.RecordOfInterest.PatientIDs = []string{"vip-1"}
	if got := r.LongestWindow(); got != 24*time.Hour {
		t.Errorf("record_of_interest cool-down 24h: LongestWindow() = %v, want 24h", got)
	}
	r.BreakGlassFrequency.Window = domain.Duration(48 * time.Hour)
	if got := r.LongestWindow(); got != 48*time.Hour {
		t.Errorf("break_glass_frequency 48h: LongestWindow() = %v, want 48h", got)
	}

	// A detector rebuilt from the replayed window still counts the uses before the restart.
	rules := domain.DefaultAnomalyRules()
	rules.RecordOfInterest.PatientIDs = []string{"vip-1"}
	rules.BreakGlassFrequency.MaxUses = 2
	var log []*eventsv1.AuditRecord
	for _, h := range []time.Duration{0, time.Hour} {
		log = append(log, at(t0.Add(h), "er", commonv1.Role_ROLE_CLINICIAN, "vip-1", eventsv1.Action_ACTION_BREAK_GLASS))
	}
	restart := t0.Add(7 * time.Hour)
	d := domain.NewDetector(rules)
	for i, rec := range log {
		if rec.GetMeta().GetOccurredAt().AsTime().After(restart.Add(-rules.LongestWindow())) {
			d.Observe(uint64(i+1), rec)
		}
	}
	next := at(restart, "er", commonv1.Role_ROLE_CLINICIAN, "vip-1", eventsv1.Action_ACTION_BREAK_GLASS)
	var got []string
	for _, a := range d.Observe(uint64(len(log)+1), next) {
		got = append(got, a.RuleID)
	}
	if !slices.Equal(got, []string{domain.RuleBreakGlass, domain.RuleRecordOfInterest, domain.RuleBreakGlassFrequency}) {
		t.Errorf("after the replay: rules fired = %v, want break_glass, record_of_interest and break_glass_frequency (the third use in 8h)", got)
	}
}
