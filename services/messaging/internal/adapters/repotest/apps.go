package repotest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// AppRepository is the contract of domain.AppRepository.
func AppRepository(t *testing.T, newStore Factory) {
	sub := newStore(t)
	f := newFixture(t, sub)
	ctx := t.Context()
	pool, err := f.s.CreatePool(ctx, domain.Pool{ID: id("pool"), Name: "Apps", CreatedAt: f.now}, nil)
	if err != nil {
		t.Fatalf("CreatePool = %v", err)
	}
	newApp := func(pools ...string) domain.ClientApp {
		return domain.ClientApp{ClientID: id("app"), Kind: directoryv1.ClientAppKind_CLIENT_APP_KIND_CARE_TEAM, DisplayName: "App",
			AllowedScopes: []string{"messages.read"}, PoolIDs: pools, UpdatedAt: f.now}
	}

	t.Run("register", func(t *testing.T) {
		a := newApp(pool.ID)
		stored, err := f.s.RegisterClientApp(ctx, a, []outbox.Event{event("app-registered")})
		if err != nil || !stored.Active {
			t.Fatalf("RegisterClientApp = %+v, %v; want active", stored, err)
		}
		if _, err := f.s.RegisterClientApp(ctx, a, nil); !errors.Is(err, domain.ErrAppExists) {
			t.Errorf("RegisterClientApp(again) = %v, want ErrAppExists", err)
		}
		if _, err := f.s.RegisterClientApp(ctx, newApp(id("pool")), nil); !errors.Is(err, domain.ErrPoolNotFound) {
			t.Errorf("RegisterClientApp(unknown pool) = %v, want ErrPoolNotFound", err)
		}
	})

	t.Run("update and list", func(t *testing.T) {
		a, err := f.s.RegisterClientApp(ctx, newApp(), nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := f.s.UpdateClientApp(ctx, a.ClientID, func(cur domain.ClientApp) (domain.ClientApp, []outbox.Event, error) {
			cur.Active, cur.AllowedScopes, cur.PoolIDs = false, []string{"messages.read", "messages.write"}, []string{pool.ID}
			return cur, []outbox.Event{event("app-updated")}, nil
		})
		if err != nil || out.Active {
			t.Fatalf("UpdateClientApp = %+v, %v", out, err)
		}
		if _, err := f.s.UpdateClientApp(ctx, a.ClientID, func(cur domain.ClientApp) (domain.ClientApp, []outbox.Event, error) {
			cur.PoolIDs = []string{id("pool")}
			return cur, nil, nil
		}); !errors.Is(err, domain.ErrPoolNotFound) {
			t.Errorf("UpdateClientApp(unknown pool) = %v, want ErrPoolNotFound", err)
		}
		if _, err := f.s.UpdateClientApp(ctx, id("app"), func(cur domain.ClientApp) (domain.ClientApp, []outbox.Event, error) { return cur, nil, nil }); !errors.Is(err, domain.ErrAppNotFound) {
			t.Errorf("UpdateClientApp(unknown) = %v, want ErrAppNotFound", err)
		}
		all, err := f.s.ClientApps(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(all, func(x domain.ClientApp) bool { return x.ClientID == a.ClientID })
		if i < 0 || all[i].Active || !slices.Equal(all[i].AllowedScopes, []string{"messages.read", "messages.write"}) || !slices.Equal(all[i].PoolIDs, []string{pool.ID}) {
			t.Fatalf("listed app = %+v", all)
		}
		if !slices.IsSortedFunc(all, func(x, y domain.ClientApp) int { return strings.Compare(x.ClientID, y.ClientID) }) {
			t.Error("apps not listed by client id")
		}
		after, err := f.s.ClientApps(ctx, a.ClientID, 100)
		if err != nil || slices.ContainsFunc(after, func(x domain.ClientApp) bool { return x.ClientID <= a.ClientID }) {
			t.Errorf("ClientApps(after) = %+v, %v", after, err)
		}
	})
}
