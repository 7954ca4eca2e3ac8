// Package ports adapts the notification use cases to the outside: the gRPC NotificationService
// (decode, call the use case, encode; the use cases' errors are usererr values the platform's
// interceptor sends as they are) and the JetStream handler of message events.
package ports

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/notification/internal/app"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// GRPC implements notificationv1.NotificationServiceServer.
type GRPC struct {
	notificationv1.UnimplementedNotificationServiceServer
	app *app.Service
}

// NewGRPC returns the gRPC handler of svc.
func NewGRPC(svc *app.Service) *GRPC { return &GRPC{app: svc} }

func principal(ctx context.Context) (*auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, auth.ErrUnauthenticated
	}
	if p.Kind != auth.KindUser {
		return nil, domain.ErrPermissionDenied
	}
	return p, nil
}

func etag(v int64) string { return strconv.FormatInt(v, 10) }

func parseEtag(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, usererr.New(usererr.InvalidArgument, "ETAG_MALFORMED", "etag is malformed")
	}
	return v, nil
}

func channelPB(s domain.ChannelSetting) *notificationv1.ChannelPreference {
	return &notificationv1.ChannelPreference{Enabled: s.Enabled, Address: s.Address, Verified: s.Verified}
}

func prefsPB(p domain.Preferences) *notificationv1.Preferences {
	out := &notificationv1.Preferences{
		Subject: p.Subject,
		Email:   channelPB(p.Channel(domain.ChannelEmail)), Sms: channelPB(p.Channel(domain.ChannelSMS)),
		Push: channelPB(p.Channel(domain.ChannelPush)), Webhook: channelPB(p.Channel(domain.ChannelWebhook)),
		QuietHours: &notificationv1.QuietHours{Enabled: p.Quiet.Enabled,
			StartMinute: int32(p.Quiet.StartMinute), //nolint:gosec // G115: minutes are 0..1439 (Preferences.Validate) and stored as smallint
			EndMinute:   int32(p.Quiet.EndMinute),   //nolint:gosec // G115: as StartMinute
			TimeZone:    p.Quiet.TimeZone},
		DigestWindow:      durationpb.New(p.DigestWindow),
		RemindersEnabled:  p.RemindersEnabled,
		ReminderAfter:     durationpb.New(p.ReminderAfter),
		Locale:            p.Locale,
		Etag:              etag(p.Version),
		PoolSubscriptions: p.PoolSubscriptions,
	}
	if !p.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(p.UpdateTime)
	}
	return out
}

// GetPreferences implements the rpc.
func (g *GRPC) GetPreferences(ctx context.Context, _ *notificationv1.GetPreferencesRequest) (*notificationv1.GetPreferencesResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	prefs, err := g.app.GetPreferences(ctx, p)
	if err != nil {
		return nil, err
	}
	return &notificationv1.GetPreferencesResponse{Preferences: prefsPB(prefs)}, nil
}

var channelFields = map[string]domain.Channel{"email": domain.ChannelEmail, "sms": domain.ChannelSMS, "push": domain.ChannelPush, "webhook": domain.ChannelWebhook}

// UpdatePreferences implements the rpc.
func (g *GRPC) UpdatePreferences(ctx context.Context, req *notificationv1.UpdatePreferencesRequest) (*notificationv1.UpdatePreferencesResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	// The request rules refuse an empty update_mask (UPDATE_MASK_REQUIRED) before the handler.
	paths := req.GetUpdateMask().GetPaths()
	in := req.GetPreferences()
	var changes []func(*domain.Preferences)
	var problems []string
	for _, path := range paths {
		head, field, _ := strings.Cut(path, ".")
		if ch, ok := channelFields[head]; ok {
			src := channelOf(in, ch)
			switch field {
			case "":
				changes = append(changes, func(d *domain.Preferences) {
					d.Channels[ch] = domain.ChannelSetting{Enabled: src.GetEnabled(), Address: src.GetAddress()}
				})
			case "enabled":
				changes = append(changes, func(d *domain.Preferences) {
					s := d.Channels[ch]
					s.Enabled = src.GetEnabled()
					d.Channels[ch] = s
				})
			case "address":
				changes = append(changes, func(d *domain.Preferences) {
					s := d.Channels[ch]
					s.Address, s.Verified = src.GetAddress(), false
					d.Channels[ch] = s
				})
			default:
				problems = append(problems, path)
			}
			continue
		}
		switch path {
		case "quiet_hours":
			q := in.GetQuietHours()
			changes = append(changes, func(d *domain.Preferences) {
				d.Quiet = domain.QuietHours{Enabled: q.GetEnabled(), StartMinute: int(q.GetStartMinute()), EndMinute: int(q.GetEndMinute()), TimeZone: q.GetTimeZone()}
			})
		case "digest_window":
			v := in.GetDigestWindow()
			if v != nil && !v.IsValid() {
				problems = append(problems, path)
			}
			changes = append(changes, func(d *domain.Preferences) { d.DigestWindow = v.AsDuration() })
		case "reminders_enabled":
			changes = append(changes, func(d *domain.Preferences) { d.RemindersEnabled = in.GetRemindersEnabled() })
		case "reminder_after":
			v := in.GetReminderAfter()
			changes = append(changes, func(d *domain.Preferences) {
				d.ReminderAfter = domain.DefaultReminderWait
				if v != nil {
					d.ReminderAfter = v.AsDuration()
				}
			})
		case "locale":
			changes = append(changes, func(d *domain.Preferences) { d.Locale = in.GetLocale() })
		case "pool_subscriptions":
			changes = append(changes, func(d *domain.Preferences) { d.PoolSubscriptions = append([]string{}, in.GetPoolSubscriptions()...) })
		default:
			problems = append(problems, path)
		}
	}
	if len(problems) > 0 {
		return nil, usererr.New(usererr.InvalidArgument, "UPDATE_MASK_INVALID", "update_mask names unknown or output-only fields: "+strings.Join(problems, ", "))
	}
	expect, err := parseEtag(in.GetEtag())
	if err != nil {
		return nil, err
	}
	prefs, err := g.app.UpdatePreferences(ctx, p, expect, func(d *domain.Preferences) {
		if d.Channels == nil {
			d.Channels = map[domain.Channel]domain.ChannelSetting{}
		}
		for _, c := range changes {
			c(d)
		}
	})
	if err != nil {
		return nil, err
	}
	return &notificationv1.UpdatePreferencesResponse{Preferences: prefsPB(prefs)}, nil
}

func channelOf(p *notificationv1.Preferences, ch domain.Channel) *notificationv1.ChannelPreference {
	switch ch {
	case domain.ChannelEmail:
		return p.GetEmail()
	case domain.ChannelSMS:
		return p.GetSms()
	case domain.ChannelPush:
		return p.GetPush()
	}
	return p.GetWebhook()
}

type pageToken struct {
	CreatedAt time.Time `json:"c"`
	ID        string    `json:"i"`
	Filter    string    `json:"f"`
}

func filterHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:8])
}

// ListDeliveries implements the rpc.
func (g *GRPC) ListDeliveries(ctx context.Context, req *notificationv1.ListDeliveriesRequest) (*notificationv1.ListDeliveriesResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	size := pageSize(req.GetPageSize(), 50, 200)
	f := domain.DeliveryFilter{Recipient: req.GetRecipientSubject(), Channel: domain.Channel(code16(req.GetChannel())),
		Status: domain.Status(code16(req.GetStatus())), MessageID: req.GetMessageId()}
	if req.GetStartTime() != nil {
		f.Start = req.GetStartTime().AsTime()
	}
	if req.GetEndTime() != nil {
		f.End = req.GetEndTime().AsTime()
	}
	// An inverted range (TIME_RANGE_INVALID) is refused by the request rules before the handler.
	fh := filterHash(p.Subject, f.Recipient, strconv.Itoa(int(f.Channel)), strconv.Itoa(int(f.Status)), f.MessageID, f.Start.String(), f.End.String())
	var cur *domain.DeliveryCursor
	if t := req.GetPageToken(); t != "" {
		raw, err := base64.RawURLEncoding.DecodeString(t)
		var pt pageToken
		if err != nil || json.Unmarshal(raw, &pt) != nil || pt.Filter != fh || !domain.IsUUID(pt.ID) {
			return nil, usererr.New(usererr.InvalidArgument, "PAGE_TOKEN_INVALID", "page_token is malformed or was issued for other filters")
		}
		cur = &domain.DeliveryCursor{CreatedAt: pt.CreatedAt, ID: pt.ID}
	}
	ds, err := g.app.ListDeliveries(ctx, p, f, cur, size+1)
	if err != nil {
		return nil, err
	}
	resp := &notificationv1.ListDeliveriesResponse{}
	if len(ds) > size {
		ds = ds[:size]
		last := ds[len(ds)-1]
		raw, _ := json.Marshal(pageToken{CreatedAt: last.CreatedAt, ID: last.ID, Filter: fh})
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString(raw)
	}
	for _, d := range ds {
		resp.Deliveries = append(resp.Deliveries, deliveryPB(d))
	}
	return resp, nil
}

func statusPB(s domain.Status) notificationv1.DeliveryStatus {
	if s == domain.StatusSending {
		return notificationv1.DeliveryStatus_DELIVERY_STATUS_PENDING
	}
	return notificationv1.DeliveryStatus(s)
}

func deliveryPB(d domain.Delivery) *notificationv1.Delivery {
	out := &notificationv1.Delivery{
		DeliveryId: d.ID, RecipientSubject: d.RecipientSubject, Channel: notificationv1.Channel(d.Channel),
		Kind: notificationv1.NotificationKind(d.Kind), MessageId: d.MessageID, ThreadId: d.ThreadID, EventId: d.EventID,
		Status: statusPB(d.Status), SuppressionCode: d.SuppressionCode,
		CreateTime: timestamppb.New(d.CreatedAt), UpdateTime: timestamppb.New(d.UpdatedAt),
	}
	for _, a := range d.Log {
		pa := &notificationv1.DeliveryAttempt{
			Attempt:   int32(a.Attempt), //nolint:gosec // G115: attempts are bounded by the retry policy's MaxAttempts
			Status:    statusPB(a.Status),
			StartTime: timestamppb.New(a.StartTime), FinishTime: timestamppb.New(a.FinishTime), ErrorCode: a.ErrorCode}
		if !a.NextAttempt.IsZero() {
			pa.NextAttemptTime = timestamppb.New(a.NextAttempt)
		}
		out.Attempts = append(out.Attempts, pa)
	}
	return out
}

func templatePB(t domain.Template) *notificationv1.Template {
	out := &notificationv1.Template{Kind: notificationv1.NotificationKind(t.Kind), Channel: notificationv1.Channel(t.Channel),
		Locale: t.Locale, SubjectTemplate: t.Subject, BodyTemplate: t.Body, Version: t.Version,
		UpdatedBySubject: t.UpdatedBy, Etag: etag(t.Version)}
	if !t.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(t.UpdateTime)
	}
	return out
}

// ListTemplates implements the rpc.
func (g *GRPC) ListTemplates(ctx context.Context, req *notificationv1.ListTemplatesRequest) (*notificationv1.ListTemplatesResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	size := pageSize(req.GetPageSize(), 100, 500)
	offset := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, usererr.New(usererr.InvalidArgument, "PAGE_TOKEN_INVALID", "page_token is malformed")
		}
		offset = n
	}
	all, err := g.app.ListTemplates(ctx, p)
	if err != nil {
		return nil, err
	}
	var match []domain.Template
	for _, t := range all {
		if (req.GetKind() == 0 || int(t.Kind) == int(req.GetKind())) && (req.GetChannel() == 0 || int(t.Channel) == int(req.GetChannel())) &&
			(req.GetLocale() == "" || t.Locale == req.GetLocale()) {
			match = append(match, t)
		}
	}
	resp := &notificationv1.ListTemplatesResponse{}
	for i := offset; i < len(match) && i < offset+size; i++ {
		resp.Templates = append(resp.Templates, templatePB(match[i]))
	}
	if offset+size < len(match) {
		resp.NextPageToken = strconv.Itoa(offset + size)
	}
	return resp, nil
}

// UpdateTemplate implements the rpc.
func (g *GRPC) UpdateTemplate(ctx context.Context, req *notificationv1.UpdateTemplateRequest) (*notificationv1.UpdateTemplateResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetTemplate()
	expect, err := parseEtag(in.GetEtag())
	if err != nil {
		return nil, err
	}
	t := domain.Template{Kind: domain.Kind(code16(in.GetKind())), Channel: domain.Channel(code16(in.GetChannel())), Locale: in.GetLocale(),
		Subject: in.GetSubjectTemplate(), Body: in.GetBodyTemplate()}
	out, err := g.app.UpdateTemplate(ctx, p, t, expect)
	if err != nil {
		return nil, err
	}
	return &notificationv1.UpdateTemplateResponse{Template: templatePB(out)}, nil
}

// pageSize applies a list rpc's page_size rule: zero means def, larger than most is capped. A
// negative size never gets here: the request rules (int32.gte = 0) refuse it before the handler.
func pageSize(requested int32, def, most int) int {
	if requested <= 0 {
		return def
	}
	return min(int(requested), most)
}
