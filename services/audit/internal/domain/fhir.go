package domain

import (
	"encoding/json"
	"strings"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
)

// FHIR code systems used in exported AuditEvents.
const (
	fhirAuditEventType  = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	fhirActReason       = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	fhirSourceType      = "http://terminology.hl7.org/CodeSystem/security-source-type"
	fhirEntityType      = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	fhirObjectRole      = "http://terminology.hl7.org/CodeSystem/object-role"
	fhirParticipantType = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
	securemsgAction     = "https://securemsg.dev/fhir/CodeSystem/audit-action"
	securemsgRecordType = "https://securemsg.dev/fhir/CodeSystem/record-type"
	securemsgRole       = "https://securemsg.dev/fhir/CodeSystem/role"
)

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type concept struct {
	Coding []coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

type identifierRef struct {
	Identifier struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Display string `json:"display,omitempty"`
}

func ref(system, value string) *identifierRef {
	r := &identifierRef{}
	r.Identifier.System, r.Identifier.Value = system, value
	return r
}

type fhirAgent struct {
	Type      *concept       `json:"type,omitempty"`
	Role      []concept      `json:"role,omitempty"`
	Who       *identifierRef `json:"who,omitempty"`
	Requestor bool           `json:"requestor"`
	Network   *struct {
		Address string `json:"address"`
		Type    string `json:"type"`
	} `json:"network,omitempty"`
	PurposeOfUse []concept `json:"purposeOfUse,omitempty"`
}

type fhirEntity struct {
	What  *identifierRef `json:"what,omitempty"`
	Type  *coding        `json:"type,omitempty"`
	Role  *coding        `json:"role,omitempty"`
	Name  string         `json:"name,omitempty"`
	Query string         `json:"query,omitempty"`
}

type auditEvent struct {
	ResourceType   string       `json:"resourceType"`
	ID             string       `json:"id"`
	Type           coding       `json:"type"`
	Subtype        []coding     `json:"subtype,omitempty"`
	Action         string       `json:"action"`
	Recorded       string       `json:"recorded"`
	Outcome        string       `json:"outcome"`
	OutcomeDesc    string       `json:"outcomeDesc,omitempty"`
	PurposeOfEvent []concept    `json:"purposeOfEvent,omitempty"`
	Agent          []fhirAgent  `json:"agent"`
	Source         fhirSource   `json:"source"`
	Entity         []fhirEntity `json:"entity,omitempty"`
}

type fhirSource struct {
	Site     string         `json:"site,omitempty"`
	Observer *identifierRef `json:"observer"`
	Type     []coding       `json:"type,omitempty"`
}

// FHIRAuditEventJSON renders a logged record as one FHIR R4 AuditEvent resource and a newline.
// Mapping: type "rest" (or "110100" application activity for background jobs), subtype the
// securemsg action and the gRPC method, action C/R/U/D/E, recorded = when the action happened,
// outcome 0/4/8 with the reason code as outcomeDesc, agent = the actor (who, role, requestor,
// network address) plus the client app and whom the actor acted for, source = the producing
// service, entity = the record acted on and the patient.
func FHIRAuditEventJSON(r *eventsv1.AuditRecord) ([]byte, error) {
	ev := auditEvent{
		ResourceType: "AuditEvent",
		ID:           r.GetMeta().GetEventId(),
		Type:         coding{System: fhirAuditEventType, Code: "rest", Display: "RESTful Operation"},
		Action:       fhirAction(r.GetAction()),
		Recorded:     r.GetMeta().GetOccurredAt().AsTime().UTC().Format(time.RFC3339Nano),
		Outcome:      fhirOutcome(r.GetOutcome()),
		OutcomeDesc:  r.GetReasonCode(),
	}
	if !strings.HasPrefix(r.GetOperation(), "/") {
		ev.Type = coding{System: "http://dicom.nema.org/resources/ontology/DCM", Code: "110100", Display: "Application Activity"}
	}
	ev.Subtype = append(ev.Subtype, coding{System: securemsgAction, Code: enumCode(r.GetAction().String(), "ACTION_")})
	if op := r.GetOperation(); op != "" {
		ev.Subtype = append(ev.Subtype, coding{System: "urn:ietf:rfc:3986", Code: op})
	}
	if pou := fhirPurpose(r.GetPurposeOfUse()); pou != "" {
		ev.PurposeOfEvent = []concept{{Coding: []coding{{System: fhirActReason, Code: pou}}}}
	}
	a := r.GetActor()
	who := ref("urn:securemsg:subject", a.GetSubject())
	agentType := "humanuser"
	if a.GetRole() == commonv1.Role_ROLE_SERVICE {
		agentType = "dataprocessor"
	}
	actor := fhirAgent{
		Type:      &concept{Coding: []coding{{System: fhirParticipantType, Code: agentType}}},
		Role:      []concept{{Coding: []coding{{System: securemsgRole, Code: enumCode(a.GetRole().String(), "ROLE_")}}}},
		Who:       who,
		Requestor: true,
	}
	if org := a.GetOrganisationId(); org != "" {
		actor.Who.Display = "organisation " + org
	}
	if ip := r.GetSourceIp(); ip != "" {
		actor.Network = &struct {
			Address string `json:"address"`
			Type    string `json:"type"`
		}{Address: ip, Type: "2"} // 2 = IP address
	}
	ev.Agent = append(ev.Agent, actor)
	if c := r.GetClientApp(); c != "" {
		ev.Agent = append(ev.Agent, fhirAgent{Type: &concept{Text: "client-application"}, Who: ref("urn:securemsg:client", c)})
	}
	if obo := a.GetOnBehalfOf(); obo != "" {
		ev.Agent = append(ev.Agent, fhirAgent{Type: &concept{Text: "on-behalf-of"}, Who: ref("urn:securemsg:patient", obo)})
	}
	ev.Source = fhirSource{
		Observer: ref("urn:securemsg:component", enumCode(r.GetMeta().GetProducer().String(), "COMPONENT_")),
		Type:     []coding{{System: fhirSourceType, Code: "4", Display: "Application Server"}},
	}
	if id := r.GetRecordId(); id != "" || r.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_UNSPECIFIED {
		ev.Entity = append(ev.Entity, fhirEntity{
			What: ref(securemsgRecordType+"/"+enumCode(r.GetRecordType().String(), "RECORD_TYPE_"), id),
			Type: &coding{System: fhirEntityType, Code: "2", Display: "System Object"},
			Role: &coding{System: fhirObjectRole, Code: "4", Display: "Domain Resource"},
		})
	}
	if pid := r.GetPatientId(); pid != "" {
		ev.Entity = append(ev.Entity, fhirEntity{
			What: ref("urn:securemsg:patient", pid),
			Type: &coding{System: fhirEntityType, Code: "1", Display: "Person"},
			Role: &coding{System: fhirObjectRole, Code: "1", Display: "Patient"},
		})
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func enumCode(name, prefix string) string { return strings.ToLower(strings.TrimPrefix(name, prefix)) }

func fhirAction(a eventsv1.Action) string {
	switch a {
	case eventsv1.Action_ACTION_CREATE:
		return "C"
	case eventsv1.Action_ACTION_READ, eventsv1.Action_ACTION_DOWNLOAD, eventsv1.Action_ACTION_BREAK_GLASS, eventsv1.Action_ACTION_EXPORT:
		return "R"
	case eventsv1.Action_ACTION_UPDATE:
		return "U"
	case eventsv1.Action_ACTION_DELETE, eventsv1.Action_ACTION_PURGE:
		return "D"
	}
	return "E" // deny, query, alerts: executions of a function
}

func fhirOutcome(o eventsv1.Outcome) string {
	switch o {
	case eventsv1.Outcome_OUTCOME_SUCCESS:
		return "0"
	case eventsv1.Outcome_OUTCOME_DENIED:
		return "4"
	}
	return "8"
}

func fhirPurpose(p commonv1.PurposeOfUse) string {
	switch p {
	case commonv1.PurposeOfUse_PURPOSE_OF_USE_TREATMENT:
		return "TREAT"
	case commonv1.PurposeOfUse_PURPOSE_OF_USE_EMERGENCY:
		return "ETREAT"
	case commonv1.PurposeOfUse_PURPOSE_OF_USE_PAYMENT:
		return "HPAYMT"
	case commonv1.PurposeOfUse_PURPOSE_OF_USE_OPERATIONS:
		return "HOPERAT"
	case commonv1.PurposeOfUse_PURPOSE_OF_USE_PATIENT_REQUEST:
		return "PATRQT"
	case commonv1.PurposeOfUse_PURPOSE_OF_USE_LEGAL:
		return "LEGAL"
	}
	return ""
}
