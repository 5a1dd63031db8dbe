"""The objects of the emulated org (``default_schema()``).

Objects are declarations (``ObjectDef``/``FieldDef`` from :mod:`sfsync_emulator.schema`): the
store, the SOQL compiler and describe all read them, nothing special-cases an object by name
except the derived fields the store maintains (``Name`` on Lead/Contact/User, CampaignMember's
``LeadOrContactId``/``HasResponded``/``FirstRespondedDate``, Opportunity's ``IsClosed``/``IsWon``).

Key prefixes are the real ones (§0.6); the custom objects get ``a00``/``a01`` as a fresh org
would.
"""

from __future__ import annotations

import re
from typing import Any

from .schema import FieldDef, ObjectDef, Schema

_SYSTEM_READONLY: dict[str, Any] = {"createable": False, "updateable": False}


def _label(name: str) -> str:
    base = name[:-3] if name.endswith("__c") else name
    base = base.replace("_", " ")
    base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", base)
    if base.endswith(" Id") and len(base) > 3:
        base = base[:-3]
    return base.strip()


def fd(name: str, type_: str, **kw: Any) -> FieldDef:
    """A field with a derived label and ``custom`` set for ``__c`` names."""
    kw.setdefault("label", _label(name))
    kw.setdefault("custom", name.endswith("__c"))
    if type_ == "textarea":
        kw.setdefault("length", 32000 if name.endswith(("Description", "Description__c")) else 255)
    return FieldDef(name=name, type=type_, **kw)


def ref(name: str, *targets: str, relationship: str | None = None, **kw: Any) -> FieldDef:
    if relationship is None:
        if name.endswith("__c"):
            relationship = name[:-3] + "__r"
        elif name.endswith("Id"):
            relationship = name[:-2]
    return fd(name, "reference", length=18, reference_to=targets, relationship_name=relationship, **kw)


def system_fields(owner: bool = True) -> list[FieldDef]:
    out = [
        fd("Id", "id", length=18, nillable=False, **_SYSTEM_READONLY, label="Record ID"),
        fd(
            "IsDeleted",
            "boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            **_SYSTEM_READONLY,
            label="Deleted",
        ),
        fd("CreatedDate", "datetime", nillable=False, **_SYSTEM_READONLY, label="Created Date"),
        ref("CreatedById", "User", nillable=False, **_SYSTEM_READONLY, label="Created By ID"),
        fd("LastModifiedDate", "datetime", nillable=False, **_SYSTEM_READONLY, label="Last Modified Date"),
        ref("LastModifiedById", "User", nillable=False, **_SYSTEM_READONLY, label="Last Modified By ID"),
        fd("SystemModstamp", "datetime", nillable=False, **_SYSTEM_READONLY, label="System Modstamp"),
    ]
    if owner:
        out.append(ref("OwnerId", "User", nillable=False, defaulted_on_create=True, label="Owner ID"))
    return out


SYSTEM_FIELD_NAMES = frozenset(
    {"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp"}
)


def address(prefix: str, compound: str) -> list[FieldDef]:
    """Components of a compound address plus the compound itself (read-only)."""
    comp = {"compound_field_name": compound}
    return [
        fd(prefix + "Street", "textarea", length=255, **comp),
        fd(prefix + "City", "string", length=40, **comp),
        fd(prefix + "State", "string", length=80, **comp),
        fd(prefix + "StateCode", "string", length=10, **comp),
        fd(prefix + "PostalCode", "string", length=20, **comp),
        fd(prefix + "Country", "string", length=80, **comp),
        fd(prefix + "CountryCode", "string", length=10, **comp),
        fd(prefix + "Latitude", "double", precision=18, scale=15, **comp),
        fd(prefix + "Longitude", "double", precision=18, scale=15, **comp),
        fd(prefix + "GeocodeAccuracy", "picklist", length=40, picklist_values=GEOCODE_ACCURACY, **comp),
        fd(compound, "address", **_SYSTEM_READONLY, label=_label(compound)),
    ]


GEOCODE_ACCURACY = (
    "Address",
    "NearAddress",
    "Block",
    "Street",
    "ExtendedZip",
    "Zip",
    "Neighborhood",
    "City",
    "County",
    "State",
    "Unknown",
)
LEAD_STATUS = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
LEAD_SOURCE = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
RATING = ("Hot", "Warm", "Cold")
INDUSTRY = (
    "Agriculture",
    "Banking",
    "Biotechnology",
    "Consulting",
    "Education",
    "Energy",
    "Finance",
    "Healthcare",
    "Manufacturing",
    "Media",
    "Retail",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Other",
)
SALUTATION = ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")
ACCOUNT_TYPE = (
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Channel Partner / Reseller",
    "Installation Partner",
    "Technology Partner",
    "Other",
)
OPPORTUNITY_STAGE = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
CLOSED_STAGES = frozenset({"Closed Won", "Closed Lost"})
WON_STAGES = frozenset({"Closed Won"})
OPPORTUNITY_TYPE = (
    "Existing Customer - Upgrade",
    "Existing Customer - Replacement",
    "Existing Customer - Downgrade",
    "New Customer",
)
CAMPAIGN_TYPE = (
    "Conference",
    "Webinar",
    "Trade Show",
    "Public Relations",
    "Partners",
    "Referral Program",
    "Advertisement",
    "Banner Ads",
    "Direct Mail",
    "Email",
    "Telemarketing",
    "Other",
)
CAMPAIGN_STATUS = ("Planned", "In Progress", "Completed", "Aborted")
MEMBER_STATUS = ("Planned", "Received", "Responded", "Sent")
RESPONDED_STATUSES = frozenset({"Responded"})
CONTACT_ROLE = (
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
)
TASK_STATUS = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
TASK_PRIORITY = ("High", "Normal", "Low")
TASK_TYPE = ("Call", "Email", "Meeting", "Other")
SHOW_AS = ("Busy", "OutOfOffice", "Free")
PROJECT_STATUS = ("Planned", "Active", "On Hold", "Done")
TIME_ZONES = ("America/Los_Angeles", "America/New_York", "Europe/London", "Europe/Paris", "Asia/Tokyo")

WHO_TARGETS = ("Contact", "Lead")
WHAT_TARGETS = ("Account", "Campaign", "Opportunity", "Project__c")


def _picklist(name: str, values: tuple[str, ...], *, restricted: bool = True, **kw: Any) -> FieldDef:
    kw.setdefault("length", 255)
    return fd(name, "picklist", picklist_values=values, restricted_picklist=restricted, **kw)


def _person_name_fields() -> list[FieldDef]:
    return [
        _picklist("Salutation", SALUTATION, restricted=False, length=40),
        fd("FirstName", "string", length=40),
        fd("LastName", "string", length=80, nillable=False, required=True),
        fd("Name", "string", length=121, nillable=False, **_SYSTEM_READONLY, label="Full Name"),
    ]


def _user() -> ObjectDef:
    fields = [
        *system_fields(owner=False),
        fd("Username", "string", length=80, nillable=False, required=True, unique=True, id_lookup=True),
        fd("FirstName", "string", length=40),
        fd("LastName", "string", length=80, nillable=False, required=True),
        fd("Name", "string", length=121, nillable=False, **_SYSTEM_READONLY, label="Full Name"),
        fd("Email", "email", length=128, nillable=False, required=True),
        fd("Alias", "string", length=8),
        fd("Title", "string", length=80),
        fd("Department", "string", length=80),
        fd("CompanyName", "string", length=80),
        fd("IsActive", "boolean", nillable=False, defaulted_on_create=True, default_value=True, label="Active"),
        _picklist(
            "TimeZoneSidKey",
            TIME_ZONES,
            length=40,
            defaulted_on_create=True,
            default_value=TIME_ZONES[0],
            label="Time Zone",
        ),
        ref("ManagerId", "User"),
    ]
    return ObjectDef(
        "User", "005", tuple(fields), label="User", label_plural="Users", deletable=False, undeletable=False
    )


def _lead() -> ObjectDef:
    fields = [
        *system_fields(),
        ref("MasterRecordId", "Lead", **_SYSTEM_READONLY, label="Master Record ID"),
        *_person_name_fields(),
        fd("Title", "string", length=128),
        fd("Company", "string", length=255, nillable=False, required=True),
        fd("Email", "email", length=80),
        fd("Phone", "phone", length=40),
        fd("MobilePhone", "phone", length=40),
        fd("Website", "url", length=255),
        *address("", "Address"),
        _picklist(
            "Status",
            LEAD_STATUS,
            nillable=False,
            defaulted_on_create=True,
            default_value=LEAD_STATUS[0],
            label="Lead Status",
        ),
        _picklist("LeadSource", LEAD_SOURCE, label="Lead Source"),
        _picklist("Rating", RATING),
        _picklist("Industry", INDUSTRY),
        fd("AnnualRevenue", "currency", precision=18, scale=0),
        fd("NumberOfEmployees", "int", precision=8, label="Employees"),
        fd("Description", "textarea"),
        fd("DoNotCall", "boolean", nillable=False, defaulted_on_create=True, default_value=False),
        fd(
            "HasOptedOutOfEmail",
            "boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            label="Email Opt Out",
        ),
        fd(
            "IsConverted",
            "boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            **_SYSTEM_READONLY,
            label="Converted",
        ),
        fd("ConvertedDate", "date", **_SYSTEM_READONLY),
        ref("ConvertedAccountId", "Account", **_SYSTEM_READONLY),
        ref("ConvertedContactId", "Contact", **_SYSTEM_READONLY),
        ref("ConvertedOpportunityId", "Opportunity", **_SYSTEM_READONLY),
        fd("Sfsync_Key__c", "string", length=64, external_id=True, unique=True, id_lookup=True, label="Sfsync Key"),
    ]
    return ObjectDef(
        "Lead",
        "00Q",
        tuple(fields),
        label="Lead",
        label_plural="Leads",
        mergeable=True,
        feed_enabled=True,
        cascade_delete=(("CampaignMember", "LeadId"), ("Task", "WhoId"), ("Event", "WhoId")),
    )


def _contact() -> ObjectDef:
    fields = [
        *system_fields(),
        ref("MasterRecordId", "Contact", **_SYSTEM_READONLY, label="Master Record ID"),
        ref("AccountId", "Account"),
        *_person_name_fields(),
        fd("Title", "string", length=128),
        fd("Department", "string", length=80),
        fd("Email", "email", length=80),
        fd("Phone", "phone", length=40, label="Business Phone"),
        fd("MobilePhone", "phone", length=40),
        fd("Fax", "phone", length=40, label="Business Fax"),
        fd("Birthdate", "date"),
        *address("Mailing", "MailingAddress"),
        _picklist("LeadSource", LEAD_SOURCE, label="Lead Source"),
        ref("ReportsToId", "Contact"),
        fd("Description", "textarea"),
        fd("DoNotCall", "boolean", nillable=False, defaulted_on_create=True, default_value=False),
        fd(
            "HasOptedOutOfEmail",
            "boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            label="Email Opt Out",
        ),
        fd("Sfsync_Key__c", "string", length=64, external_id=True, unique=True, id_lookup=True, label="Sfsync Key"),
        fd(
            "Account_Rating__c",
            "picklist",
            length=255,
            calculated=True,
            **_SYSTEM_READONLY,
            formula_sql='(SELECT a."Rating" FROM "Account" a WHERE a."Id" = t."AccountId")',
            calculated_formula="TEXT(Account.Rating)",
            label="Account Rating",
        ),
    ]
    return ObjectDef(
        "Contact",
        "003",
        tuple(fields),
        label="Contact",
        label_plural="Contacts",
        mergeable=True,
        feed_enabled=True,
        cascade_delete=(
            ("CampaignMember", "ContactId"),
            ("OpportunityContactRole", "ContactId"),
            ("Task", "WhoId"),
            ("Event", "WhoId"),
        ),
    )


def _account() -> ObjectDef:
    fields = [
        *system_fields(),
        ref("MasterRecordId", "Account", **_SYSTEM_READONLY, label="Master Record ID"),
        fd("Name", "string", length=255, nillable=False, required=True, label="Account Name"),
        _picklist("Type", ACCOUNT_TYPE, restricted=False, label="Account Type"),
        ref("ParentId", "Account"),
        *address("Billing", "BillingAddress"),
        *address("Shipping", "ShippingAddress"),
        fd("Phone", "phone", length=40, label="Account Phone"),
        fd("Fax", "phone", length=40, label="Account Fax"),
        fd("Website", "url", length=255),
        _picklist("Industry", INDUSTRY),
        fd("AnnualRevenue", "currency", precision=18, scale=0),
        fd("NumberOfEmployees", "int", precision=8, label="Employees"),
        _picklist("Rating", RATING, label="Account Rating"),
        fd("AccountNumber", "string", length=40),
        fd("Description", "textarea"),
        fd("Legacy_Id__c", "string", length=40, external_id=True, label="Legacy Id"),
    ]
    return ObjectDef(
        "Account",
        "001",
        tuple(fields),
        label="Account",
        label_plural="Accounts",
        mergeable=True,
        feed_enabled=True,
        cascade_delete=(
            ("Contact", "AccountId"),
            ("Opportunity", "AccountId"),
            ("Task", "WhatId"),
            ("Event", "WhatId"),
        ),
    )


def _opportunity() -> ObjectDef:
    fields = [
        *system_fields(),
        ref("AccountId", "Account"),
        fd("Name", "string", length=120, nillable=False, required=True, label="Opportunity Name"),
        fd("Description", "textarea"),
        _picklist("StageName", OPPORTUNITY_STAGE, nillable=False, required=True, label="Stage"),
        fd("Amount", "currency", precision=18, scale=2),
        fd("Probability", "percent", precision=3, scale=0, label="Probability (%)"),
        fd(
            "ExpectedRevenue",
            "currency",
            precision=18,
            scale=2,
            calculated=True,
            **_SYSTEM_READONLY,
            formula_sql='(t."Amount" * t."Probability" / 100.0)',
            calculated_formula="Amount * Probability",
            label="Expected Amount",
        ),
        fd("TotalOpportunityQuantity", "double", precision=18, scale=2, label="Quantity"),
        fd("CloseDate", "date", nillable=False, required=True),
        _picklist("Type", OPPORTUNITY_TYPE, restricted=False, label="Opportunity Type"),
        fd("NextStep", "string", length=255),
        _picklist("LeadSource", LEAD_SOURCE, label="Lead Source"),
        fd(
            "IsClosed",
            "boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            **_SYSTEM_READONLY,
            label="Closed",
        ),
        fd(
            "IsWon",
            "boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            **_SYSTEM_READONLY,
            label="Won",
        ),
        ref("CampaignId", "Campaign", label="Primary Campaign Source ID"),
    ]
    return ObjectDef(
        "Opportunity",
        "006",
        tuple(fields),
        label="Opportunity",
        label_plural="Opportunities",
        feed_enabled=True,
        cascade_delete=(("OpportunityContactRole", "OpportunityId"), ("Task", "WhatId"), ("Event", "WhatId")),
    )


def _opportunity_contact_role() -> ObjectDef:
    fields = [
        *system_fields(owner=False),
        ref("OpportunityId", "Opportunity", nillable=False, required=True, updateable=False),
        ref("ContactId", "Contact", nillable=False, required=True),
        _picklist("Role", CONTACT_ROLE, restricted=False),
        fd("IsPrimary", "boolean", nillable=False, defaulted_on_create=True, default_value=False, label="Primary"),
    ]
    return ObjectDef(
        "OpportunityContactRole",
        "00K",
        tuple(fields),
        label="Opportunity Contact Role",
        label_plural="Opportunity Contact Role",
        undeletable=False,
    )


def _campaign() -> ObjectDef:
    fields = [
        *system_fields(),
        fd("Name", "string", length=80, nillable=False, required=True, label="Campaign Name"),
        ref("ParentId", "Campaign"),
        _picklist("Type", CAMPAIGN_TYPE, restricted=False),
        _picklist("Status", CAMPAIGN_STATUS, restricted=False),
        fd("StartDate", "date"),
        fd("EndDate", "date"),
        fd("ExpectedRevenue", "currency", precision=18, scale=0, label="Expected Revenue in Campaign"),
        fd("BudgetedCost", "currency", precision=18, scale=0, label="Budgeted Cost in Campaign"),
        fd("ActualCost", "currency", precision=18, scale=0, label="Actual Cost in Campaign"),
        fd("ExpectedResponse", "percent", precision=8, scale=2, label="Expected Response (%)"),
        fd("NumberSent", "double", precision=18, scale=0, label="Num Sent in Campaign"),
        fd("IsActive", "boolean", nillable=False, defaulted_on_create=True, default_value=False, label="Active"),
        fd("Description", "textarea"),
    ]
    return ObjectDef(
        "Campaign",
        "701",
        tuple(fields),
        label="Campaign",
        label_plural="Campaigns",
        feed_enabled=True,
        cascade_delete=(
            ("CampaignMember", "CampaignId"),
            ("CampaignMemberStatus", "CampaignId"),
            ("Task", "WhatId"),
            ("Event", "WhatId"),
        ),
    )


def _campaign_member() -> ObjectDef:
    fields = [
        *system_fields(owner=False),
        ref("CampaignId", "Campaign", nillable=False, required=True, updateable=False),
        ref("LeadId", "Lead", updateable=False),
        ref("ContactId", "Contact", updateable=False),
        ref("LeadOrContactId", "Contact", "Lead", relationship=None, **_SYSTEM_READONLY, label="Contact or Lead ID"),
        _picklist(
            "Status",
            MEMBER_STATUS,
            restricted=False,
            defaulted_on_create=True,
            default_value="Sent",
            label="Member Status",
        ),
        fd(
            "HasResponded",
            "boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            **_SYSTEM_READONLY,
            label="Responded",
        ),
        fd("FirstRespondedDate", "date", **_SYSTEM_READONLY, label="Member First Responded"),
    ]
    return ObjectDef(
        "CampaignMember",
        "00v",
        tuple(fields),
        label="Campaign Member",
        label_plural="Campaign Members",
        undeletable=False,
        unique_together=(("CampaignId", "LeadId"), ("CampaignId", "ContactId")),
    )


def _campaign_member_status() -> ObjectDef:
    fields = [
        *system_fields(owner=False),
        ref("CampaignId", "Campaign", nillable=False, required=True, updateable=False),
        fd("Label", "string", length=765, nillable=False, required=True, label="Member Status"),
        fd("SortOrder", "int", precision=9),
        fd("IsDefault", "boolean", nillable=False, defaulted_on_create=True, default_value=False, label="Default"),
        fd("HasResponded", "boolean", nillable=False, defaulted_on_create=True, default_value=False, label="Responded"),
    ]
    return ObjectDef(
        "CampaignMemberStatus",
        "01Y",
        tuple(fields),
        label="Campaign Member Status",
        label_plural="Campaign Member Statuses",
        undeletable=False,
        searchable=False,
    )


def _activity_common() -> list[FieldDef]:
    return [
        ref("WhoId", *WHO_TARGETS, label="Name ID"),
        ref("WhatId", *WHAT_TARGETS, label="Related To ID"),
        fd("Subject", "combobox", length=255),
        fd("ActivityDate", "date", label="Due Date Only"),
        fd("Description", "textarea"),
        fd(
            "IsArchived",
            "boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            **_SYSTEM_READONLY,
            label="Archived",
        ),
    ]


def _task() -> ObjectDef:
    fields = [
        *system_fields(),
        *_activity_common(),
        _picklist("Status", TASK_STATUS, nillable=False, defaulted_on_create=True, default_value="Not Started"),
        _picklist("Priority", TASK_PRIORITY, nillable=False, defaulted_on_create=True, default_value="Normal"),
        _picklist("Type", TASK_TYPE, restricted=False),
        fd("CallDurationInSeconds", "int", precision=9, label="Call Duration"),
    ]
    return ObjectDef("Task", "00T", tuple(fields), label="Task", label_plural="Tasks", archivable=True)


def _event() -> ObjectDef:
    fields = [
        *system_fields(),
        *_activity_common(),
        fd("Location", "string", length=255),
        fd("StartDateTime", "datetime", label="Start Date Time"),
        fd("EndDateTime", "datetime", label="End Date Time"),
        fd("ActivityDateTime", "datetime", label="Due Date Time"),
        fd("DurationInMinutes", "int", precision=8, label="Duration"),
        fd(
            "IsAllDayEvent",
            "boolean",
            nillable=False,
            defaulted_on_create=True,
            default_value=False,
            label="All-Day Event",
        ),
        _picklist("ShowAs", SHOW_AS, restricted=False, label="Show Time As"),
    ]
    return ObjectDef("Event", "00U", tuple(fields), label="Event", label_plural="Events", archivable=True)


def _project() -> ObjectDef:
    fields = [
        *system_fields(),
        fd("Name", "string", length=80, nillable=False, required=True, label="Project Name"),
        ref("Account__c", "Account", label="Account"),
        _picklist("Status__c", PROJECT_STATUS, defaulted_on_create=True, default_value="Planned", label="Status"),
        fd("Budget__c", "currency", precision=16, scale=2, label="Budget"),
        fd("Start_Date__c", "date", label="Start Date"),
        fd("End_Date__c", "date", label="End Date"),
        fd("Description__c", "textarea", label="Description"),
    ]
    return ObjectDef(
        "Project__c",
        "a00",
        tuple(fields),
        label="Project",
        label_plural="Projects",
        custom=True,
        cascade_delete=(("Milestone__c", "Project__c"), ("Task", "WhatId"), ("Event", "WhatId")),
    )


def _milestone() -> ObjectDef:
    fields = [
        *system_fields(),
        fd("Name", "string", length=80, nillable=False, required=True, label="Milestone Name"),
        ref("Project__c", "Project__c", label="Project"),
        fd("Due_Date__c", "date", label="Due Date"),
        fd("Completed__c", "boolean", nillable=False, defaulted_on_create=True, default_value=False, label="Completed"),
        fd("Weight__c", "percent", precision=5, scale=2, label="Weight"),
    ]
    return ObjectDef("Milestone__c", "a01", tuple(fields), label="Milestone", label_plural="Milestones", custom=True)


def default_schema() -> Schema:
    """A fresh schema (with its own mutable profile) of the default org."""
    return Schema(
        [
            _user(),
            _account(),
            _contact(),
            _lead(),
            _opportunity(),
            _opportunity_contact_role(),
            _campaign(),
            _campaign_member(),
            _campaign_member_status(),
            _task(),
            _event(),
            _project(),
            _milestone(),
        ]
    )
