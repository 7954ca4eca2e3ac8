package policy_test

import (
	"slices"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
)

// portalRoles are the people a portal frontend signs in: whatever they may call is on the
// browser surface, and nothing else is.
var portalRoles = []string{"patient", "proxy", "clinician", "staff"}

// auditorConsole are the auditor's rpcs a portal's auditor screen calls: read-only, and on the
// browser surface although the auditor's other rpcs are not.
var auditorConsole = []string{
	"/securemsg.audit.v1.AuditService/QueryAuditEvents",
	"/securemsg.audit.v1.AuditService/VerifyRange",
	"/securemsg.audit.v1.AuditService/GetLatestCheckpoint",
}

// offBrowserSurface are the rpcs the decision keeps off the HTTP edge by name (service-to-service
// and admin/auditor rpcs). Listing them here as well as deriving the surface from the policies
// means a policy change that hands one of them to a portal role fails this test and forces a
// deliberate choice, instead of silently exposing the rpc to browsers.
var offBrowserSurface = []string{
	"/securemsg.messaging.v1.MessagingService/CheckMessageAccess",
	"/securemsg.attachment.v1.AttachmentService/BindAttachment",
	"/securemsg.attachment.v1.AttachmentService/PurgeAttachments",
	"/securemsg.messaging.v1.MessagingService/SetLegalHold",
	"/securemsg.messaging.v1.MessagingService/UpdatePoolSettings",
	"/securemsg.messaging.v1.MessagingService/RunRetentionPurge",
	"/securemsg.messaging.v1.MessagingService/GetRetentionPolicy",
	"/securemsg.messaging.v1.MessagingService/ListLegalHolds",
	"/securemsg.notification.v1.NotificationService/ListTemplates",
	"/securemsg.notification.v1.NotificationService/UpdateTemplate",
	"/securemsg.audit.v1.AuditService/ExportAuditEvents",
	"/securemsg.audit.v1.AuditService/GetInclusionProof",
	"/securemsg.audit.v1.AuditService/GetConsistencyProof",
	"/securemsg.audit.v1.AuditService/ListAlerts",
	"/securemsg.audit.v1.AuditService/AcknowledgeAlert",
}

// TestBrowserSurfaceMatchesPolicies: an rpc is on the browser surface exactly when the shipped
// policies let a patient, proxy, clinician or staff member call it at all (evaluated at the rpc
// level, as policy.Guard does); the named service and admin rpcs are never on it; and the list
// names only rpcs that exist.
func TestBrowserSurfaceMatchesPolicies(t *testing.T) {
	t.Parallel()
	e := newEngine(t, nil)
	who := callers()
	rpcs := generatedRPCs()
	for _, m := range rpcs {
		action, svc, ok := policy.ActionForMethod(m)
		if !ok {
			t.Errorf("ActionForMethod(%s) = not ok", m)
			continue
		}
		var allowed []string
		for _, role := range portalRoles {
			if e.Evaluate(who[role], action, policy.APIResource(svc), policy.Context{}).Allowed {
				allowed = append(allowed, role)
			}
		}
		console := slices.Contains(auditorConsole, m)
		if console && !e.Evaluate(who["auditor"], action, policy.APIResource(svc), policy.Context{}).Allowed {
			t.Errorf("%s: on the auditor's console, but the policies do not let an auditor call it", m)
		}
		switch on := policy.OnBrowserSurface(m); {
		case console && !on:
			t.Errorf("%s: on the auditor's console, but not on the browser surface (policy/browser.go)", m)
		case console:
		case len(allowed) > 0 && !on:
			t.Errorf("%s: the policies let %v call it, but it is not on the browser surface (policy/browser.go)", m, allowed)
		case len(allowed) == 0 && on:
			t.Errorf("%s: on the browser surface, but no portal role (%v) may call it", m, portalRoles)
		}
	}
	for _, m := range offBrowserSurface {
		if policy.OnBrowserSurface(m) {
			t.Errorf("OnBrowserSurface(%s) = true, want false (service-to-service or admin/auditor rpc)", m)
		}
		if !slices.Contains(rpcs, m) {
			t.Errorf("offBrowserSurface names %s, which is no rpc of gen/", m)
		}
	}
	for _, m := range policy.BrowserMethods() {
		if !slices.Contains(rpcs, m) {
			t.Errorf("policy/browser.go lists %s, which is no rpc of gen/", m)
		}
	}
	for _, m := range []string{"", "/", "/grpc.health.v1.Health/Check", "/securemsg.messaging.v1.MessagingService/", "securemsg.messaging.v1.MessagingService/GetThread"} {
		if policy.OnBrowserSurface(m) {
			t.Errorf("OnBrowserSurface(%q) = true, want false", m)
		}
	}
}

// TestEveryRESTRouteIsOnTheBrowserSurface: a method with a google.api.http route is on the
// browser surface. The edge would refuse it anyway (its surface check stands in front of the gRPC
// server whatever the route), but a route to an rpc no browser may call is a contract mistake
// that the OpenAPI document would publish.
func TestEveryRESTRouteIsOnTheBrowserSurface(t *testing.T) {
	t.Parallel()
	routes := 0
	for _, name := range []string{
		messagingv1.MessagingService_ServiceDesc.ServiceName, attachmentv1.AttachmentService_ServiceDesc.ServiceName,
		notificationv1.NotificationService_ServiceDesc.ServiceName, auditv1.AuditService_ServiceDesc.ServiceName,
	} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		sd := d.(protoreflect.ServiceDescriptor)
		for i := range sd.Methods().Len() {
			m := sd.Methods().Get(i)
			rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
			if rule == nil || rule.GetPattern() == nil {
				continue
			}
			routes++
			if full := "/" + string(sd.FullName()) + "/" + string(m.Name()); !policy.OnBrowserSurface(full) {
				t.Errorf("%s has a REST route but is not on the browser surface", full)
			}
		}
	}
	if routes == 0 {
		t.Error("no rpc has a REST route: the descriptors were not read")
	}
}
