package repotest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// GrantRepository is the contract of domain.GrantRepository.
func GrantRepository(t *testing.T, newStore Factory) {
	sub := newStore(t)
	f := newFixture(t, sub)
	ctx := t.Context()
	patient, proxy := id("patient"), id("proxy")
	newGrant := func(at time.Time) domain.ProxyGrant {
		g := domain.ProxyGrant{ID: uuid.NewString(), ProxySubject: proxy, PatientID: patient, Scopes: []string{"read"},
			ExpiresAt: at.Add(24 * time.Hour), CreatedAt: at, GrantedBy: "patient-subject"}
		if err := f.s.CreateProxyGrant(ctx, g, []outbox.Event{event("grant-given")}); err != nil {
			t.Fatalf("CreateProxyGrant = %v", err)
		}
		return g
	}
	older, newer := newGrant(f.now), newGrant(f.now.Add(time.Minute))

	byPatient, err := f.s.ProxyGrants(ctx, domain.GrantQuery{PatientID: patient, Limit: 10})
	if err != nil || len(byPatient) != 2 || byPatient[0].ID != newer.ID || byPatient[1].ID != older.ID || byPatient[0].GrantedBy != "patient-subject" {
		t.Fatalf("ProxyGrants(patient) = %+v, %v; want newest first", byPatient, err)
	}
	if held, _ := f.s.ProxyGrants(ctx, domain.GrantQuery{ProxySubject: proxy, Limit: 1}); len(held) != 1 {
		t.Errorf("ProxyGrants(proxy, limit 1) = %d grants", len(held))
	}
	if none, _ := f.s.ProxyGrants(ctx, domain.GrantQuery{ProxySubject: proxy, PatientID: id("other"), Limit: 10}); len(none) != 0 {
		t.Errorf("ProxyGrants(proxy, other patient) = %+v", none)
	}

	at := f.now.Add(time.Hour)
	g, err := f.s.RevokeProxyGrant(ctx, older.ID, at, func(cur domain.ProxyGrant) ([]outbox.Event, error) {
		if !cur.RevokedAt.IsZero() {
			t.Errorf("grant revoked before: %+v", cur)
		}
		return []outbox.Event{event("grant-revoked")}, nil
	})
	if err != nil || !g.RevokedAt.Equal(at) {
		t.Fatalf("RevokeProxyGrant = %+v, %v", g, err)
	}
	g, err = f.s.RevokeProxyGrant(ctx, older.ID, at.Add(time.Hour), func(cur domain.ProxyGrant) ([]outbox.Event, error) { return nil, nil })
	if err != nil || !g.RevokedAt.Equal(at) {
		t.Errorf("RevokeProxyGrant(no-op) = %+v, %v; want the first revocation kept", g, err)
	}
	refused := errors.New("refused")
	if _, err := f.s.RevokeProxyGrant(ctx, newer.ID, at, func(domain.ProxyGrant) ([]outbox.Event, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Errorf("RevokeProxyGrant(decide refuses) = %v", err)
	}
	if _, err := f.s.RevokeProxyGrant(ctx, uuid.NewString(), at, func(domain.ProxyGrant) ([]outbox.Event, error) { return nil, nil }); !errors.Is(err, domain.ErrGrantNotFound) {
		t.Errorf("RevokeProxyGrant(unknown) = %v, want ErrGrantNotFound", err)
	}
	list, _ := f.s.ProxyGrants(ctx, domain.GrantQuery{PatientID: patient, Limit: 10})
	for _, g := range list {
		if (g.ID == newer.ID) != g.RevokedAt.IsZero() {
			t.Errorf("stored grant %+v: only the older one is revoked", g)
		}
	}
}
