package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func TestApplyAgeRules(t *testing.T) {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	now := day(2026, 12, 3)
	inAYear := now.AddDate(1, 0, 0)
	cases := []struct {
		name    string
		birth   time.Time
		scopes  []string
		want    time.Time
		capped  bool
		refused bool
	}{
		{"unknown age: adult rules", time.Time{}, []string{"read", "write"}, inAYear, false, false},
		{"adult", day(1990, 5, 1), []string{"read", "write"}, inAYear, false, false},
		{"18 today", day(2008, 12, 3), []string{"read", "write"}, inAYear, false, false},
		{"adolescent writing", day(2011, 1, 1), []string{"read", "write"}, time.Time{}, false, true},
		{"adolescent, a year before 18", day(2009, 6, 1), []string{"read", "notifications"}, day(2027, 6, 1), true, false},
		{"adolescent, 18 beyond the grant", day(2012, 1, 1), []string{"read"}, inAYear, false, false},
		{"12 today", day(2014, 12, 3), []string{"read", "write"}, time.Time{}, false, true},
		{"child, 12 within the grant", day(2015, 3, 1), []string{"read", "write"}, day(2027, 3, 1), true, false},
		{"child born on 29 February", day(2016, 2, 29), []string{"read", "write"}, inAYear, false, false},
		{"adolescent, 18 on the last day of February", day(2009, 2, 28), []string{"read"}, day(2027, 2, 28), true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := domain.ProxyGrant{Scopes: c.scopes, ExpiresAt: inAYear}
			capped, err := g.ApplyAgeRules(c.birth, now)
			if c.refused {
				if !errors.Is(err, domain.ErrAdolescentWrite) {
					t.Fatalf("ApplyAgeRules = %v, want ErrAdolescentWrite", err)
				}
				return
			}
			if err != nil || capped != c.capped || !g.ExpiresAt.Equal(c.want) {
				t.Errorf("ApplyAgeRules = capped %t, end %v, %v; want capped %t, end %v", capped, g.ExpiresAt, err, c.capped, c.want)
			}
		})
	}
}
