package policy

import (
	"maps"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
)

// EvaluateUnsliced decides against every loaded policy rather than the action's slice, so the
// tests can show that slicing changes no decision.
func (e *Engine) EvaluateUnsliced(p *auth.Principal, action string, res Resource, rc Context) Decision {
	s := *e.cur.Load()
	s.byAction = map[types.EntityUID]*cedar.PolicySet{}
	for uid := range s.actions {
		s.byAction[uid] = s.policies
	}
	return e.evaluate(&s, principalEntityFor(p), p, action, res, rc, e.now())
}

// SliceSize is the number of policies decisions on action are checked against.
func (e *Engine) SliceSize(action string) int {
	return len(maps.Collect(e.cur.Load().byAction[types.NewEntityUID("Action", types.String(action))].All()))
}
