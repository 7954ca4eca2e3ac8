package domain

import (
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
}

// Rule ids carried by alerts.
const (
	RuleBulkRead    = "bulk_read"
	RuleOutsidePool = "outside_pool"
	RuleBreakGlass  = "break_glass"
	RuleDenials     = "repeated_denials"
)

// DefaultAnomalyRules are the rules without a rules file: 50 patients in 15 minutes, 10 denials in 5 minutes, break-the-glass
// always, and out-of-pool access judged by the "pool_member" reason code.
func DefaultAnomalyRules() AnomalyRules {
	var r AnomalyRules
	r.BulkRead.Enabled, r.BulkRead.MaxPatients, r.BulkRead.Window = true, 50, Duration(15*time.Minute)
	r.OutsidePool.Enabled, r.OutsidePool.PoolReasonCodes = true, []string{"pool_member"}
	r.BreakGlass.Enabled = true
	r.Denials.Enabled, r.Denials.MaxDenials, r.Denials.Window = true, 10, Duration(5*time.Minute)
	return r
}

// ParseAnomalyRules reads rules from JSON (the format of services/audit/anomaly-rules.json);
// fields it leaves out keep their defaults.
func ParseAnomalyRules(b []byte) (AnomalyRules, error) {
	r := DefaultAnomalyRules()
	if err := json.Unmarshal(b, &r); err != nil {
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
	reads, denials       []hit
	readCool, denialCool time.Time // no new alert of the rule before this time
}

// Detector evaluates the rules over the log's records in append order. It keeps per-actor
// sliding windows in memory (bounded by the windows); it is not safe for concurrent use.
type Detector struct {
	rules  AnomalyRules
	actors map[string]*actorState
	seen   map[uint64]bool // sequences already counted (a retried batch is not counted twice)
}

// NewDetector returns a detector for rules.
func NewDetector(rules AnomalyRules) *Detector {
	return &Detector{rules: rules, actors: map[string]*actorState{}, seen: map[uint64]bool{}}
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
	if len(st.reads) == 0 && len(st.denials) == 0 && st.readCool.Before(at) && st.denialCool.Before(at) {
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
