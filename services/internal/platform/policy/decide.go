package policy

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
)

// Sensitivity values of a record.
const (
	SensitivityNormal                 = "NORMAL"
	SensitivityAdolescentConfidential = "ADOLESCENT_CONFIDENTIAL"
)

// ResourceAPI is the resource type of rpc-level decisions.
const ResourceAPI = "Api"

// Resource is the record an action is about. Type is a schema entity type ("Thread", "Message",
// "Attachment", "Pool", "Patient", "Preferences", "Deliveries", "Template", "AuditLog"); fields
// that do not apply stay "".
type Resource struct {
	Type        string
	ID          string
	PatientID   string
	PoolID      string
	Sensitivity string
	AssignedTo  string
	// Owner is the subject of the record's author: the message sender, the attachment uploader,
	// the preference holder.
	Owner string
}

// APIResource is the rpc-level resource for a service ("messaging", "attachment", ...).
func APIResource(service string) Resource { return Resource{Type: ResourceAPI, ID: service} }

// Context carries request facts the record alone does not give.
type Context struct {
	// BreakGlassReason is the caller's stated reason for break-the-glass access. Only its presence
	// is used here; the text is PHI-adjacent free text and never enters decisions' records or logs.
	BreakGlassReason string
	// TargetPoolID is the destination pool of a TransferThread.
	TargetPoolID string
	// ReaderRole is the role ("patient", "proxy", "clinician", ...) a read receipt's reader
	// read in (messaging.ViewReadReceipt).
	ReaderRole string
}

// Decision is the answer to one authorisation question.
type Decision struct {
	Allowed bool
	// Reasons are the ids of the deciding policies: the permits that allowed, or the forbids that
	// denied (empty when no permit applied: deny by default).
	Reasons []string
	// BreakGlass is true when only break-glass policies allowed the access.
	BreakGlass bool
	// PHIRead is true when the action is in the phi-read group.
	PHIRead bool
}

// ReasonCode renders the decision's reasons for an audit record.
func (d Decision) ReasonCode() string {
	if len(d.Reasons) == 0 {
		if d.Allowed {
			return "allowed"
		}
		return "no_permit"
	}
	return strings.Join(d.Reasons, ",")
}

// ErrNotRecorded is returned by Authorize when an allowed PHI read could not be recorded: the
// read is refused (the returned Decision is not Allowed).
var ErrNotRecorded = errors.New("policy: access could not be recorded")

// Evaluate answers whether p may perform action on res, without recording anything. Use cases
// call Authorize; Evaluate is for tests, benchmarks and tooling.
func (e *Engine) Evaluate(p *auth.Principal, action string, res Resource, rc Context) Decision {
	return e.evaluate(e.cur.Load(), principalEntityFor(p), p, action, res, rc, e.now())
}

// Authorize is the record-level check use cases call. Every denial is recorded; an allowed PHI
// read is recorded and refused with ErrNotRecorded if recording fails (fail closed). The error is
// nil whenever recording worked, whatever the decision.
func (e *Engine) Authorize(ctx context.Context, p *auth.Principal, action string, res Resource, rc Context) (Decision, error) {
	now := e.now()
	d := e.evaluate(e.cur.Load(), principalEntityFromContext(ctx, p), p, action, res, rc, now)
	return e.record(ctx, p, action, res, nil, d, now)
}

// record writes the audit record for d when one is due and applies the fail-closed rule.
// record writes d to the audit trail when it must be (denials, PHI reads). target, for an
// rpc-level decision, is the record the request asked for, which the audit record names.
func (e *Engine) record(ctx context.Context, p *auth.Principal, action string, res Resource, target *Target, d Decision, now time.Time) (Decision, error) {
	if d.Allowed && !d.PHIRead {
		return d, nil
	}
	rec := auth.NewRecord(ctx, p, now)
	rec.Action = action
	rec.RecordType = res.Type
	rec.RecordID = res.ID
	rec.PatientID = res.PatientID
	rec.BreakGlass = d.BreakGlass
	rec.PHIRead = d.PHIRead && d.Allowed
	rec.ReasonCode = d.ReasonCode()
	rec.Outcome = auth.OutcomeDenied
	if d.Allowed {
		rec.Outcome = auth.OutcomeAllowed
	}
	if res.Type == ResourceAPI {
		rec.RecordType, rec.RecordID, rec.PatientID = "rpc", "", ""
		if target != nil {
			rec.RecordType, rec.RecordID, rec.PatientID = target.Type, target.ID, target.PatientID
			if rec.RecordType == "Preferences" && rec.RecordID == "" && p != nil {
				rec.RecordID = p.Subject // a caller's preferences are their own
			}
		}
	}
	if p != nil && p.HasRole(auth.RoleProxy) && res.PatientID != "" && res.PatientID != p.PatientID {
		rec.OnBehalfOf = res.PatientID
	}
	if err := e.recorder.RecordDecision(ctx, rec); err != nil {
		if d.Allowed {
			e.logger.LogAttrs(ctx, slog.LevelError, "phi read refused: decision not recorded",
				slog.String("action", action), slog.String("error", err.Error()))
			return Decision{Allowed: false, Reasons: []string{"audit_unavailable"}, PHIRead: d.PHIRead}, ErrNotRecorded
		}
		e.logger.LogAttrs(ctx, slog.LevelWarn, "denial not recorded",
			slog.String("action", action), slog.String("error", err.Error()))
	}
	return d, nil
}

func (e *Engine) evaluate(s *snapshot, pe *principalEntity, p *auth.Principal, action string, res Resource, rc Context, now time.Time) Decision {
	d := Decision{PHIRead: s.phiRead[action]}
	if pe == nil || (res.Type != ResourceAPI && !s.resourceTypes[res.Type]) || res.ID == "" {
		return d
	}
	actionUID := types.NewEntityUID("Action", types.String(action))
	if _, ok := s.actions[actionUID]; !ok {
		return d
	}
	resEntity := resourceEntity(res)
	store := entityStore{principal: pe.entity, resource: resEntity, actions: s.actions}
	req := cedar.Request{
		Principal: pe.entity.UID,
		Action:    actionUID,
		Resource:  resEntity.UID,
		Context:   requestContext(s, p, res, rc, now),
	}
	decision, diag := cedar.Authorize(s.byAction[actionUID], store, req)
	if len(diag.Errors) > 0 {
		// Cedar skips a policy whose condition errors; for a forbid that would fail open. Any
		// evaluation error therefore denies, and is logged with ids only.
		for _, de := range diag.Errors {
			e.logger.Error("policy evaluation error", slog.String("policy", string(de.PolicyID)), slog.String("action", action))
		}
		d.Reasons = []string{"evaluation_error"}
		return d
	}
	d.Allowed = decision == cedar.Allow
	if len(diag.Reasons) > 0 {
		d.Reasons = make([]string, len(diag.Reasons))
		d.BreakGlass = d.Allowed
		for i, r := range diag.Reasons {
			d.Reasons[i] = string(r.PolicyID)
			if !s.breakGlass[r.PolicyID] {
				d.BreakGlass = false
			}
		}
		// Cedar reports the deciding policies in no fixed order; sorted, the same decision
		// always gives the same reason code in the audit trail.
		slices.Sort(d.Reasons)
	}
	return d
}

func requestContext(s *snapshot, p *auth.Principal, res Resource, rc Context, now time.Time) types.Record {
	authAge := types.Long(math.MaxInt32)
	if p != nil && !p.AuthTime.IsZero() {
		authAge = types.Long(now.Sub(p.AuthTime) / time.Second)
	}
	grantScopes := emptySet
	if res.Type == ResourceAPI && p != nil && len(p.ProxyGrants) > 0 {
		var vals []types.Value
		for _, g := range p.ProxyGrants {
			if g.ActiveAt(now) {
				for _, sc := range g.Scopes {
					vals = append(vals, types.String(sc))
				}
			}
		}
		grantScopes = types.NewSet(vals...)
	}
	return types.NewRecord(types.RecordMap{
		"now":               types.Long(now.Unix()),
		"authAgeSeconds":    authAge,
		"mfaMethods":        s.mfaMethods,
		"freshAuthSeconds":  types.Long(s.settings.FreshAuthSeconds),
		"breakGlass":        types.Boolean(strings.TrimSpace(rc.BreakGlassReason) != ""),
		"activeGrantScopes": grantScopes,
		"targetPoolId":      types.String(rc.TargetPoolID),
		"readerRole":        types.String(rc.ReaderRole),
	})
}

var emptySet = types.NewSet()

func resourceEntity(res Resource) types.Entity {
	uid := types.NewEntityUID(types.EntityType(res.Type), types.String(res.ID))
	if res.Type == ResourceAPI {
		return types.Entity{UID: uid}
	}
	return types.Entity{UID: uid, Attributes: types.NewRecord(types.RecordMap{
		"patientId":   types.String(res.PatientID),
		"poolId":      types.String(res.PoolID),
		"sensitivity": types.String(res.Sensitivity),
		"assignedTo":  types.String(res.AssignedTo),
		"owner":       types.String(res.Owner),
	})}
}

// entityStore serves the three kinds of entity a request touches without building a map per
// request.
type entityStore struct {
	principal types.Entity
	resource  types.Entity
	actions   map[types.EntityUID]types.Entity
}

func (s entityStore) Get(uid types.EntityUID) (types.Entity, bool) {
	switch uid {
	case s.principal.UID:
		return s.principal, true
	case s.resource.UID:
		return s.resource, true
	}
	a, ok := s.actions[uid]
	return a, ok
}
