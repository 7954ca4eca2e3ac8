package repotest

import (
	"fmt"
	"testing"
	"time"
)

// RunReconcileMarks holds an implementation of domain.ReconcileMarks to its contract; newStore
// returns a fresh, empty store (its marks and its log) for each subtest.
func RunReconcileMarks(t *testing.T, newStore func(t *testing.T) MarksUnderTest) {
	t.Run("marks only rise, per producer", func(t *testing.T) {
		t.Parallel()
		m := newStore(t).Marks
		ctx := t.Context()
		for _, step := range []struct {
			producer string
			set      int64
			want     int64
		}{{"messaging", 5, 5}, {"messaging", 3, 5}, {"messaging", 9, 9}, {"attachment", 2, 2}} {
			if err := m.SetReconcileMark(ctx, step.producer, step.set); err != nil {
				t.Fatalf("SetReconcileMark(%s, %d) error = %v", step.producer, step.set, err)
			}
			if got, err := m.ReconcileMark(ctx, step.producer); err != nil || got != step.want {
				t.Errorf("ReconcileMark(%s) after setting %d = %d, %v; want %d", step.producer, step.set, got, err, step.want)
			}
		}
		if got, err := m.ReconcileMark(ctx, "notification"); err != nil || got != 0 {
			t.Errorf("ReconcileMark(unknown producer) = %d, %v; want 0", got, err)
		}
	})
	t.Run("the log holds the event ids it appended and retention kept", func(t *testing.T) {
		t.Parallel()
		u := newStore(t)
		ctx := t.Context()
		now := time.Now()
		appendAll(t, u.Log, now.AddDate(0, -6, 0), Records(t, 0, 2))
		appendAll(t, u.Log, now, Records(t, 2, 2))
		ids := []string{"evt-clin-0-0", "evt-clin-2-2", "evt-clin-0-3", "evt-nobody-9"}
		if got, err := u.Marks.HasEvents(ctx, ids); err != nil || fmt.Sprint(got) != "map[evt-clin-0-0:true evt-clin-0-3:true evt-clin-2-2:true]" {
			t.Errorf("HasEvents(%v) = %v, %v; want the three appended", ids, got, err)
		}
		if got, err := u.Marks.HasEvents(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("HasEvents(none) = %v, %v; want none", got, err)
		}
		if _, err := u.Log.DropExpired(ctx, now.AddDate(0, 0, -90)); err != nil {
			t.Fatal(err)
		}
		if got, err := u.Marks.HasEvents(ctx, ids); err != nil || fmt.Sprint(got) != "map[evt-clin-0-3:true evt-clin-2-2:true]" {
			t.Errorf("HasEvents(%v) after retention = %v, %v; want only the kept two", ids, got, err)
		}
	})
}
