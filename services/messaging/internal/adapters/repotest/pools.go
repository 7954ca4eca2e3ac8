package repotest

import (
	"errors"
	"slices"
	"testing"
	"time"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// PoolRepository is the contract of domain.PoolRepository.
func PoolRepository(t *testing.T, newStore Factory) {
	sub := newStore(t)
	f := newFixture(t, sub)
	ctx := t.Context()
	noRows := func(bool) ([]outbox.Event, error) { return nil, nil }
	newPool := func(t *testing.T, name string, listed ...string) domain.Pool {
		t.Helper()
		p := domain.Pool{ID: id("pool"), Name: name, ListedOnly: len(listed) > 0, PatientIDs: listed, CreatedAt: f.now,
			Hours: domain.ActiveHours{TimeZone: "Europe/Berlin", Windows: []domain.HoursWindow{{Day: 1, Open: 480, Close: 960}}}}
		stored, err := f.s.CreatePool(ctx, p, []outbox.Event{event("pool-created")})
		if err != nil {
			t.Fatalf("CreatePool = %v", err)
		}
		if !stored.Active || stored.Version != 1 {
			t.Fatalf("created pool = %+v, want active at version 1", stored)
		}
		return stored
	}

	t.Run("create and read", func(t *testing.T) {
		p := newPool(t, "Cardiology "+id("n"), "p-1", "p-2")
		if _, err := f.s.CreatePool(ctx, p, nil); !errors.Is(err, domain.ErrPoolExists) {
			t.Fatalf("CreatePool(same id) = %v, want ErrPoolExists", err)
		}
		v, err := f.s.Pool(ctx, p.ID, "p-2")
		if err != nil || !v.MayWrite || v.Pool.Name != p.Name || !slices.Equal(v.Pool.PatientIDs, []string{"p-1", "p-2"}) ||
			len(v.Pool.Hours.Windows) != 1 || v.Pool.Hours.TimeZone != "Europe/Berlin" {
			t.Fatalf("Pool(listed patient) = %+v, %v", v, err)
		}
		if v, _ := f.s.Pool(ctx, p.ID, "p-3"); v.MayWrite {
			t.Error("Pool(unlisted patient).MayWrite = true")
		}
		if _, err := f.s.Pool(ctx, id("pool"), ""); !errors.Is(err, domain.ErrPoolNotFound) {
			t.Errorf("Pool(unknown) = %v, want ErrPoolNotFound", err)
		}
	})

	t.Run("list", func(t *testing.T) {
		tag := id("list")
		open := newPool(t, tag+" a")
		listed := newPool(t, tag+" b", "p-9")
		gone := newPool(t, tag+" c")
		if _, err := f.s.UpdatePool(ctx, gone.ID, func(cur domain.Pool) (domain.Pool, []outbox.Event, error) {
			cur.Active, cur.UpdatedAt = false, f.now
			return cur, nil, nil
		}); err != nil {
			t.Fatalf("UpdatePool(deactivate) = %v", err)
		}
		ids := func(q domain.PoolQuery) []string {
			t.Helper()
			q.Only, q.Limit = []string{open.ID, listed.ID, gone.ID}, 10
			vs, err := f.s.Pools(ctx, q)
			if err != nil {
				t.Fatalf("Pools = %v", err)
			}
			var out []string
			for _, v := range vs {
				out = append(out, v.Pool.ID)
			}
			return out
		}
		if got := ids(domain.PoolQuery{}); !slices.Equal(got, []string{open.ID, listed.ID}) {
			t.Errorf("active pools = %v", got)
		}
		if got := ids(domain.PoolQuery{IncludeInactive: true}); !slices.Equal(got, []string{open.ID, listed.ID, gone.ID}) {
			t.Errorf("all pools = %v", got)
		}
		if got := ids(domain.PoolQuery{WritableBy: "p-1", IncludeInactive: true}); !slices.Equal(got, []string{open.ID}) {
			t.Errorf("pools p-1 may write to = %v", got)
		}
		if got := ids(domain.PoolQuery{WritableBy: "p-9"}); !slices.Equal(got, []string{open.ID, listed.ID}) {
			t.Errorf("pools p-9 may write to = %v", got)
		}
		if got := ids(domain.PoolQuery{AfterName: open.Name, AfterID: open.ID}); !slices.Equal(got, []string{listed.ID}) {
			t.Errorf("pools after the first = %v", got)
		}
		vs, err := f.s.Pools(ctx, domain.PoolQuery{Only: []string{}, Limit: 10})
		if err != nil || len(vs) != 0 {
			t.Errorf("Pools(only none) = %v, %v; want none", vs, err)
		}
	})

	t.Run("update", func(t *testing.T) {
		p := newPool(t, "Before", "p-1")
		out, err := f.s.UpdatePool(ctx, p.ID, func(cur domain.Pool) (domain.Pool, []outbox.Event, error) {
			if cur.Version != 1 || !slices.Equal(cur.PatientIDs, []string{"p-1"}) {
				t.Errorf("current pool = %+v", cur)
			}
			cur.Name, cur.PatientIDs, cur.Hours, cur.UpdatedAt = "After", []string{"p-2", "p-3"}, domain.ActiveHours{}, f.now
			return cur, []outbox.Event{event("pool-updated")}, nil
		})
		if err != nil || out.Version != 2 {
			t.Fatalf("UpdatePool = %+v, %v; want version 2", out, err)
		}
		v, err := f.s.Pool(ctx, p.ID, "p-1")
		if err != nil || v.Pool.Name != "After" || v.MayWrite || !slices.Equal(v.Pool.PatientIDs, []string{"p-2", "p-3"}) || len(v.Pool.Hours.Windows) != 0 {
			t.Fatalf("Pool after update = %+v, %v", v, err)
		}
		refused := errors.New("refused")
		if _, err := f.s.UpdatePool(ctx, p.ID, func(cur domain.Pool) (domain.Pool, []outbox.Event, error) { return cur, nil, refused }); !errors.Is(err, refused) {
			t.Errorf("UpdatePool(change fails) = %v, want its error", err)
		}
		if v, _ := f.s.Pool(ctx, p.ID, ""); v.Pool.Version != 2 {
			t.Errorf("version after a refused change = %d, want 2", v.Pool.Version)
		}
		if _, err := f.s.UpdatePool(ctx, id("pool"), func(cur domain.Pool) (domain.Pool, []outbox.Event, error) { return cur, nil, nil }); !errors.Is(err, domain.ErrPoolNotFound) {
			t.Errorf("UpdatePool(unknown) = %v, want ErrPoolNotFound", err)
		}
	})

	t.Run("members", func(t *testing.T) {
		p := newPool(t, "Members")
		m := domain.PoolMember{PoolID: p.ID, Subject: "clin-b", Role: directoryv1.PoolRole_POOL_ROLE_CLINICIAN, AddedAt: f.now}
		stored, added, err := f.s.SetPoolMember(ctx, m, noRows)
		if err != nil || !added || !stored.AddedAt.Equal(f.now) {
			t.Fatalf("SetPoolMember(new) = %+v, %v, %v", stored, added, err)
		}
		m.Role, m.AddedAt = directoryv1.PoolRole_POOL_ROLE_LEAD, f.now.Add(time.Hour)
		stored, added, err = f.s.SetPoolMember(ctx, m, noRows)
		if err != nil || added || stored.Role != directoryv1.PoolRole_POOL_ROLE_LEAD || !stored.AddedAt.Equal(f.now) {
			t.Fatalf("SetPoolMember(role change) = %+v, %v, %v; want the first AddedAt kept", stored, added, err)
		}
		if _, _, err := f.s.SetPoolMember(ctx, domain.PoolMember{PoolID: p.ID, Subject: "clin-a", Role: directoryv1.PoolRole_POOL_ROLE_STAFF, AddedAt: f.now}, noRows); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.s.SetPoolMember(ctx, domain.PoolMember{PoolID: id("pool"), Subject: "x", Role: directoryv1.PoolRole_POOL_ROLE_STAFF, AddedAt: f.now}, noRows); !errors.Is(err, domain.ErrPoolNotFound) {
			t.Errorf("SetPoolMember(unknown pool) = %v", err)
		}
		first, err := f.s.PoolMembers(ctx, p.ID, "", 1)
		if err != nil || len(first) != 1 || first[0].Subject != "clin-a" {
			t.Fatalf("PoolMembers(first page) = %+v, %v", first, err)
		}
		rest, err := f.s.PoolMembers(ctx, p.ID, "clin-a", 10)
		if err != nil || len(rest) != 1 || rest[0].Subject != "clin-b" || rest[0].Role != directoryv1.PoolRole_POOL_ROLE_LEAD {
			t.Fatalf("PoolMembers(after clin-a) = %+v, %v", rest, err)
		}
		if v, _ := f.s.Pool(ctx, p.ID, ""); v.Pool.MemberCount != 2 {
			t.Errorf("member count = %d, want 2", v.Pool.MemberCount)
		}

		th := f.thread(p.ID, id("patient"), "patient", 0)
		f.create(th, false)
		if _, err := f.s.UpdateThread(ctx, th.ID, func(cur *domain.Thread, _ domain.PoolSettingsReader) (domain.ThreadChange, error) {
			return domain.ThreadChange{Triage: &domain.Triage{Status: domain.StatusAssigned, Assignee: "clin-b", PoolID: cur.PoolID, UpdatedAt: f.now}}, nil
		}); err != nil {
			t.Fatalf("assign = %v", err)
		}
		assigned, err := f.s.RemovePoolMember(ctx, p.ID, "clin-b", []outbox.Event{event("member-removed")})
		if err != nil || assigned != 1 {
			t.Fatalf("RemovePoolMember = %d, %v; want 1 assigned thread", assigned, err)
		}
		if _, err := f.s.RemovePoolMember(ctx, p.ID, "clin-b", nil); !errors.Is(err, domain.ErrNotPoolMember) {
			t.Errorf("RemovePoolMember(again) = %v, want ErrNotPoolMember", err)
		}
		if _, err := f.s.RemovePoolMember(ctx, id("pool"), "clin-a", nil); !errors.Is(err, domain.ErrPoolNotFound) {
			t.Errorf("RemovePoolMember(unknown pool) = %v, want ErrPoolNotFound", err)
		}
	})
}
