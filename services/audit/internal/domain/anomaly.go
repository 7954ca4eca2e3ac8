package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
)

// Duration is a time.Duration read from JSON as a Go duration string ("15m").
type Duration time.Duration

// UnmarshalJSON parses "15m"-style strings.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// AnomalyRules configures the detection rules (a JSON file; see DefaultAnomalyRules).
type AnomalyRules struct {
	// BulkRead fires when one actor reads (or downloads) records of more than MaxPatients
	// distinct patients within Window.
	BulkRead struct {
		Enabled     bool     `json:"enabled"`
		MaxPatients int      `json:"max_patients"`
		Window      Duration `json:"window"`
	} `json:"bulk_read"`
	// OutsidePool fires when a clinician or staff member accesses a record of a care pool that
	// is not theirs: the record's pool is not in ActorPools[actor] (when the actor is listed),
	// or its reason code is not one of PoolReasonCodes (the codes the policies use for "member
	// of the record's pool").
	OutsidePool struct {
		Enabled         bool                `json:"enabled"`
		PoolReasonCodes []string            `json:"pool_reason_codes"`
		ActorPools      map[string][]string `json:"actor_pools"`
	} `json:"outside_pool"`
	// BreakGlass fires on every break-the-glass access.
	BreakGlass struct {
		Enabled bool `json:"enabled"`
	} `json:"break_glass"`
	// Denials fires when one actor is denied more than MaxDenials times within Window.
	Denials struct {
		Enabled    bool     `json:"enabled"`
		MaxDenials int      `json:"max_denials"`
		Window     Duration `json:"window"`
	} `json:"denials"`
	// OffHours fires when one clinician or staff member reads (or downloads) patients' records
	// more than MaxReads times within Window outside the working hours. An occasional night
	// read is normal on a ward; a run of them is not. Patients' and proxies' own access is
	// never counted. Off by default: the hours and zone are the site's.
	OffHours struct {
		Enabled bool `json:"enabled"`
		WorkingHours
		MaxReads int      `json:"max_reads"`
		Window   Duration `json:"window"`
	} `json:"off_hours"`
	// RecordOfInterest fires when anyone but the patient and their proxies (and the suite's
	// own services) reads a record of one of PatientIDs: VIPs, staff who are patients. One
	// alert per actor and patient per CoolDown.
	RecordOfInterest struct {
		Enabled    bool     `json:"enabled"`
		PatientIDs []string `json:"patient_ids"`
		CoolDown   Duration `json:"cool_down"`
	} `json:"record_of_interest"`
	// BreakGlassFrequency fires when one actor breaks the glass more than MaxUses times
	// within Window: each use already raises break_glass; this flags the habit.
	BreakGlassFrequency struct {
		Enabled bool     `json:"enabled"`
		MaxUses int      `json:"max_uses"`
		Window  Duration `json:"window"`
	} `json:"break_glass_frequency"`
}

// Rule ids carried by alerts.
const (
	RuleBulkRead    = "bulk_read"
	RuleOutsidePool = "outside_pool"
	RuleBreakGlass  = "break_glass"
	RuleDenials     = "repeated_denials"
	// RuleOffHours is many reads by one care-team member outside working hours.
	RuleOffHours = "off_hours"
	// RuleRecordOfInterest is a read of a listed patient's record by someone else.
	RuleRecordOfInterest = "record_of_interest"
	// RuleBreakGlassFrequency is one actor breaking the glass often.
	RuleBreakGlassFrequency = "break_glass_frequency"
)

// DefaultAnomalyRules are the rules without a rules file: 50 patients in 15 minutes, 10 denials in 5 minutes, break-the-glass
// always and more than 3 times in 8 hours (a shift), out-of-pool access judged by the
// "pool_member" reason code, and records of interest once per actor and patient per hour (an
// empty list: nothing fires until patients are listed). off_hours is off (its hours and zone are
// the site's) but set to more than 20 reads in an hour outside 07:00-19:00 on weekdays in UTC,
// so enabling it needs only the zone.
func DefaultAnomalyRules() AnomalyRules {
	var r AnomalyRules
	r.BulkRead.Enabled, r.BulkRead.MaxPatients, r.BulkRead.Window = true, 50, Duration(15*time.Minute)
	r.OutsidePool.Enabled, r.OutsidePool.PoolReasonCodes = true, []string{"pool_member"}
	r.BreakGlass.Enabled = true
	r.Denials.Enabled, r.Denials.MaxDenials, r.Denials.Window = true, 10, Duration(5*time.Minute)
	r.OffHours.WorkingHours = WorkingHours{Start: "07:00", End: "19:00", TimeZone: "UTC", Weekends: true}
	r.OffHours.MaxReads, r.OffHours.Window = 20, Duration(time.Hour)
	r.RecordOfInterest.Enabled, r.RecordOfInterest.CoolDown = true, Duration(time.Hour)
	r.BreakGlassFrequency.Enabled, r.BreakGlassFrequency.MaxUses, r.BreakGlassFrequency.Window = true, 3, Duration(8*time.Hour)
	return r
}

// ParseAnomalyRules reads rules from JSON (the format of services/audit/anomaly-rules.json);
// fields it leaves out keep their defaults. An unknown field is an error: a misspelt
// "time_zone" must not silently leave the default.
func ParseAnomalyRules(b []byte) (AnomalyRules, error) {
	r := DefaultAnomalyRules()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("parse anomaly rules: %w", err)
	}
	return r, r.Validate()
}

// Validate rejects thresholds that would never or always fire.
func (r AnomalyRules) Validate() error {
	if r.BulkRead.Enabled && (r.BulkRead.MaxPatients < 1 || r.BulkRead.Window <= 0) {
		return errors.New("anomaly rules: bulk_read needs max_patients >= 1 and a window")
	}
	if r.Denials.Enabled && (r.Denials.MaxDenials < 1 || r.Denials.Window <= 0) {
		return errors.New("anomaly rules: denials needs max_denials >= 1 and a window")
	}
	if r.OffHours.Enabled {
		if r.OffHours.MaxReads < 1 || r.OffHours.Window <= 0 {
			return errors.New("anomaly rules: off_hours needs max_reads >= 1 and a window")
		}
		if _, err := r.OffHours.parse(); err != nil {
			return fmt.Errorf("anomaly rules: off_hours: %w", err)
		}
	}
	if r.RecordOfInterest.Enabled {
		if r.RecordOfInterest.CoolDown <= 0 {
			return errors.New("anomaly rules: record_of_interest needs a cool_down")
		}
		if slices.Contains(r.RecordOfInterest.PatientIDs, "") {
			return errors.New("anomaly rules: record_of_interest patient_ids holds an empty id")
		}
	}
	if r.BreakGlassFrequency.Enabled && (r.BreakGlassFrequency.MaxUses < 1 || r.BreakGlassFrequency.Window <= 0) {
		return errors.New("anomaly rules: break_glass_frequency needs max_uses >= 1 and a window")
	}
	return nil
}

// LongestWindow is the longest sliding window of the enabled rules (0 when none keeps one):
// how much recent log a restarted detector must replay to rebuild its state.
func (r AnomalyRules) LongestWindow() time.Duration {
	var w time.Duration
	if r.BulkRead.Enabled {
		w = max(w, time.Duration(r.BulkRead.Window))
	}
	if r.Denials.Enabled {
		w = max(w, time.Duration(r.Denials.Window))
	}
	if r.OffHours.Enabled {
		w = max(w, time.Duration(r.OffHours.Window))
	}
	if r.RecordOfInterest.Enabled && len(r.RecordOfInterest.PatientIDs) > 0 {
		// Not a counting window, but replaying the cool-down keeps a restart from alerting
		// again on a read already alerted.
		w = max(w, time.Duration(r.RecordOfInterest.CoolDown))
	}
	if r.BreakGlassFrequency.Enabled {
		w = max(w, time.Duration(r.BreakGlassFrequency.Window))
	}
	return w
}

// Alert is a fired rule (the AnomalyAlert event's content).
type Alert struct {
	RuleID      string
	Actor       *eventsv1.AuditActor
	WindowStart time.Time
	WindowEnd   time.Time
	Count       int64
	Threshold   int64
	FirstSeq    uint64
	LastSeq     uint64
}

type hit struct {
	at      time.Time
	seq     uint64
	patient string
}

type actorState struct {
	reads, denials, offHours, glass               []hit
	readCool, denialCool, offHoursCool, glassCool time.Time            // no new alert of the rule before this time
	interestCool                                  map[string]time.Time // per patient of interest
}

// idle reports whether the state holds nothing that affects a record at now or later.
func (st *actorState) idle(now time.Time) bool {
	for p, until := range st.interestCool {
		if until.Before(now) {
			delete(st.interestCool, p)
		}
	}
	return len(st.reads) == 0 && len(st.denials) == 0 && len(st.offHours) == 0 && len(st.glass) == 0 &&
		len(st.interestCool) == 0 && st.readCool.Before(now) && st.denialCool.Before(now) &&
		st.offHoursCool.Before(now) && st.glassCool.Before(now)
}

// Detector evaluates the rules over the log's records in append order. It keeps per-actor
// sliding windows in memory (bounded by the windows); it is not safe for concurrent use.
type Detector struct {
	rules    AnomalyRules
	hours    clock           // OffHours.WorkingHours parsed
	interest map[string]bool // RecordOfInterest.PatientIDs
	actors   map[string]*actorState
	seen     map[uint64]bool // sequences already counted (a retried batch is not counted twice)
}

// NewDetector returns a detector for rules, which must have passed Validate: with working
// hours that do not parse, off_hours is disabled rather than guessed.
func NewDetector(rules AnomalyRules) *Detector {
	d := &Detector{rules: rules, interest: map[string]bool{}, actors: map[string]*actorState{}, seen: map[uint64]bool{}}
	if rules.OffHours.Enabled {
		h, err := rules.OffHours.parse()
		d.hours, d.rules.OffHours.Enabled = h, err == nil
	}
	for _, p := range rules.RecordOfInterest.PatientIDs {
		d.interest[p] = true
	}
	return d
}

// Observe feeds one appended entry and returns the alerts it fires.
func (d *Detector) Observe(seq uint64, rec *eventsv1.AuditRecord) []Alert {
	if d.seen[seq] {
		return nil
	}
	d.seen[seq] = true
	if len(d.seen) > 100000 {
		d.seen = map[uint64]bool{seq: true}
	}
	actor := rec.GetActor()
	at := rec.GetMeta().GetOccurredAt().AsTime()
	st := d.actors[actor.GetSubject()]
	if st == nil {
		st = &actorState{}
		d.actors[actor.GetSubject()] = st
	}
	var alerts []Alert
	one := func(rule string) Alert {
		return Alert{RuleID: rule, Actor: actor, WindowStart: at, WindowEnd: at, Count: 1, Threshold: 1, FirstSeq: seq, LastSeq: seq}
	}
	action, outcome := rec.GetAction(), rec.GetOutcome()
	if d.rules.BreakGlass.Enabled && action == eventsv1.Action_ACTION_BREAK_GLASS {
		alerts = append(alerts, one(RuleBreakGlass))
	}
	isAccess := outcome == eventsv1.Outcome_OUTCOME_SUCCESS && (action == eventsv1.Action_ACTION_READ ||
		action == eventsv1.Action_ACTION_DOWNLOAD || action == eventsv1.Action_ACTION_UPDATE || action == eventsv1.Action_ACTION_DELETE)
	if r := d.rules.OutsidePool; r.Enabled && isAccess && rec.GetPoolId() != "" &&
		(actor.GetRole() == commonv1.Role_ROLE_CLINICIAN || actor.GetRole() == commonv1.Role_ROLE_STAFF) {
		pools, listed := r.ActorPools[actor.GetSubject()]
		outside := listed && !slices.Contains(pools, rec.GetPoolId())
		if !listed && len(r.PoolReasonCodes) > 0 && !slices.Contains(r.PoolReasonCodes, rec.GetReasonCode()) {
			outside = true
		}
		if outside {
			alerts = append(alerts, one(RuleOutsidePool))
		}
	}
	if r := d.rules.BulkRead; r.Enabled && rec.GetPatientId() != "" && outcome == eventsv1.Outcome_OUTCOME_SUCCESS &&
		(action == eventsv1.Action_ACTION_READ || action == eventsv1.Action_ACTION_DOWNLOAD || action == eventsv1.Action_ACTION_BREAK_GLASS) {
		st.reads = prune(append(st.reads, hit{at: at, seq: seq, patient: rec.GetPatientId()}), at, time.Duration(r.Window))
		distinct := map[string]bool{}
		for _, h := range st.reads {
			distinct[h.patient] = true
		}
		if len(distinct) > r.MaxPatients && !at.Before(st.readCool) {
			alerts = append(alerts, Alert{RuleID: RuleBulkRead, Actor: actor, WindowStart: st.reads[0].at, WindowEnd: at,
				Count: int64(len(distinct)), Threshold: int64(r.MaxPatients), FirstSeq: st.reads[0].seq, LastSeq: seq})
			st.readCool = at.Add(time.Duration(r.Window))
		}
	}
	if r := d.rules.Denials; r.Enabled && (outcome == eventsv1.Outcome_OUTCOME_DENIED || action == eventsv1.Action_ACTION_DENY) {
		st.denials = prune(append(st.denials, hit{at: at, seq: seq}), at, time.Duration(r.Window))
		if len(st.denials) > r.MaxDenials && !at.Before(st.denialCool) {
			alerts = append(alerts, Alert{RuleID: RuleDenials, Actor: actor, WindowStart: st.denials[0].at, WindowEnd: at,
				Count: int64(len(st.denials)), Threshold: int64(r.MaxDenials), FirstSeq: st.denials[0].seq, LastSeq: seq})
			st.denialCool = at.Add(time.Duration(r.Window))
		}
	}
	role := actor.GetRole()
	isRead := outcome == eventsv1.Outcome_OUTCOME_SUCCESS && rec.GetPatientId() != "" &&
		(action == eventsv1.Action_ACTION_READ || action == eventsv1.Action_ACTION_DOWNLOAD || action == eventsv1.Action_ACTION_BREAK_GLASS)
	if r := d.rules.OffHours; r.Enabled && isRead && (role == commonv1.Role_ROLE_CLINICIAN || role == commonv1.Role_ROLE_STAFF) &&
		d.hours.offHours(at) {
		st.offHours = prune(append(st.offHours, hit{at: at, seq: seq}), at, time.Duration(r.Window))
		if len(st.offHours) > r.MaxReads && !at.Before(st.offHoursCool) {
			alerts = append(alerts, Alert{RuleID: RuleOffHours, Actor: actor, WindowStart: st.offHours[0].at, WindowEnd: at,
				Count: int64(len(st.offHours)), Threshold: int64(r.MaxReads), FirstSeq: st.offHours[0].seq, LastSeq: seq})
			st.offHoursCool = at.Add(time.Duration(r.Window))
		}
	} else if r.Enabled {
		st.offHours = prune(st.offHours, at, time.Duration(r.Window))
	}
	// The patient and their proxies reading the patient's own record is expected; so are the
	// suite's services (notification reading contact points to send an alert).
	if r := d.rules.RecordOfInterest; r.Enabled && isRead && d.interest[rec.GetPatientId()] &&
		actor.GetSubject() != rec.GetPatientId() && role != commonv1.Role_ROLE_PATIENT &&
		role != commonv1.Role_ROLE_PROXY && role != commonv1.Role_ROLE_SERVICE {
		if until, ok := st.interestCool[rec.GetPatientId()]; !ok || !at.Before(until) {
			alerts = append(alerts, one(RuleRecordOfInterest))
			if st.interestCool == nil {
				st.interestCool = map[string]time.Time{}
			}
			st.interestCool[rec.GetPatientId()] = at.Add(time.Duration(r.CoolDown))
		}
	}
	if r := d.rules.BreakGlassFrequency; r.Enabled && action == eventsv1.Action_ACTION_BREAK_GLASS {
		st.glass = prune(append(st.glass, hit{at: at, seq: seq}), at, time.Duration(r.Window))
		if len(st.glass) > r.MaxUses && !at.Before(st.glassCool) {
			alerts = append(alerts, Alert{RuleID: RuleBreakGlassFrequency, Actor: actor, WindowStart: st.glass[0].at, WindowEnd: at,
				Count: int64(len(st.glass)), Threshold: int64(r.MaxUses), FirstSeq: st.glass[0].seq, LastSeq: seq})
			st.glassCool = at.Add(time.Duration(r.Window))
		}
	} else if r.Enabled {
		st.glass = prune(st.glass, at, time.Duration(r.Window))
	}
	if st.idle(at) {
		delete(d.actors, actor.GetSubject())
	}
	return alerts
}

// prune drops hits older than window before now.
func prune(hs []hit, now time.Time, window time.Duration) []hit {
	cut := now.Add(-window)
	i := 0
	for i < len(hs) && hs[i].at.Before(cut) {
		i++
	}
	return hs[i:]
}
