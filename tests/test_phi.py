"""No PHI, proven: DICOM files carrying a distinct marker in every attribute of DICOM PS3.15 Annex E's Basic
Application Level Confidentiality Profile (Table E.1-1) that pydicom can set with a plausible value are built
into an index; no marker appears in any file of the index folder, any thumbnail, caption or API answer, any
log line, warning or CLI output, nor in the Space `publish` writes from it. Images flagged BurnedInAnnotation=YES
are left out and counted."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword

from dicom_files import picture, write_dicom
from retrieval import cli
from retrieval.layout import IndexFolder
from retrieval.search import SearchEngine

# Keywords of PS3.15 Annex E Table E.1-1 (Basic Profile), the sequences and binary ones left out below.
ANNEX_E = """
AccessionNumber AcquisitionComments AcquisitionDate AcquisitionDateTime AcquisitionDeviceProcessingDescription
AcquisitionProtocolDescription AcquisitionTime ActualHumanPerformersSequence AdditionalPatientHistory AdmissionID
AdmittingDate AdmittingDiagnosesDescription AdmittingTime AffectedSOPInstanceUID Allergies Arbitrary
AuthorObserverSequence BranchOfService CassetteID CommentsOnThePerformedProcedureStep ConcatenationUID
ConfidentialityConstraintOnPatientDataDescription ContentCreatorName ContentDate ContentTime
ContextGroupExtensionCreatorUID ContrastBolusAgent ContributionDescription CountryOfResidence CreatorVersionUID
CurrentPatientLocation CurveDate CurveTime CustodialOrganizationSequence DataSetTrailingPadding
DerivationDescription DetectorID DeviceSerialNumber DeviceUID DigitalSignatureUID DimensionOrganizationUID
DischargeDiagnosisDescription DistributionAddress DistributionName DoseReferenceUID EthnicGroup
FailedSOPInstanceUIDList FiducialUID FillerOrderNumberImagingServiceRequest FrameComments FrameOfReferenceUID
GantryID GeneratorID HumanPerformerName HumanPerformerOrganization IconImageSequence IdentifyingComments
ImageComments ImagePresentationComments ImagingServiceRequestComments Impressions InstanceCreatorUID
InstitutionAddress InstitutionName InstitutionalDepartmentName InsurancePlanIdentification InterpretationAuthor
InterpretationDiagnosisDescription InterpretationIDIssuer InterpretationRecorder InterpretationText
InterpretationTranscriber IrradiationEventUID IssuerOfAdmissionID IssuerOfPatientID IssuerOfServiceEpisodeID
LargePaletteColorLookupTableUID MAC MediaStorageSOPInstanceUID MedicalAlerts MedicalRecordLocator MilitaryRank
ModifiedImageDescription ModifyingDeviceID ModifyingDeviceManufacturer NameOfPhysiciansReadingStudy
NamesOfIntendedRecipientsOfResults Occupation OperatorsName OrderCallbackPhoneNumber OrderEnteredBy
OrderEntererLocation OtherPatientIDs OtherPatientNames OverlayComments OverlayDate OverlayTime
PaletteColorLookupTableUID PatientAddress PatientAge PatientBirthDate PatientBirthName PatientBirthTime
PatientComments PatientID PatientInstitutionResidence PatientMotherBirthName PatientName
PatientReligiousPreference PatientSex PatientSexNeutered PatientSize PatientState PatientTelephoneNumbers
PatientTransportArrangements PatientWeight PerformedLocation PerformedProcedureStepDescription
PerformedProcedureStepEndDate PerformedProcedureStepEndTime PerformedProcedureStepID
PerformedProcedureStepStartDate PerformedProcedureStepStartTime PerformedStationAETitle PerformedStationName
PerformingPhysicianName PersonAddress PersonName PersonTelephoneNumbers PhysicianApprovingInterpretation
PhysiciansOfRecord PlacerOrderNumberImagingServiceRequest PlateID PreMedication ProtocolName
ReasonForTheImagingServiceRequest ReasonForStudy ReferencedFrameOfReferenceUID ReferencedSOPInstanceUID
ReferencedSOPInstanceUIDInFile ReferringPhysicianAddress ReferringPhysicianName
ReferringPhysicianTelephoneNumbers RegionOfResidence RelatedFrameOfReferenceUID RequestedContrastAgent
RequestedProcedureComments RequestedProcedureDescription RequestedProcedureID RequestedProcedureLocation
RequestedSOPInstanceUID RequestingPhysician RequestingService ResponsibleOrganization ResponsiblePerson
ResultsComments ResultsIDIssuer ReviewerName ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianName
ScheduledProcedureStepDescription ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime
ScheduledProcedureStepLocation ScheduledProcedureStepStartDate ScheduledProcedureStepStartTime
ScheduledStationAETitle ScheduledStationName ScheduledStudyLocation ScheduledStudyLocationAETitle SeriesDate
SeriesDescription SeriesInstanceUID SeriesTime ServiceEpisodeDescription ServiceEpisodeID SmokingStatus
SOPInstanceUID SpecialNeeds StationName StorageMediaFileSetUID StudyComments StudyDate StudyDescription StudyID
StudyIDIssuer StudyInstanceUID StudyTime SynchronizationFrameOfReferenceUID TemplateExtensionCreatorUID
TemplateExtensionOrganizationUID TextComments TextString TimezoneOffsetFromUTC TopicAuthor TopicKeywords
TopicSubject TopicTitle TransactionUID UID VerifyingObserverName VerifyingOrganization VisitComments
""".split()
# Kept on purpose, coarsened: PatientSex (M/F/O), PatientAge (a ten-year band), the descriptions (scrubbed to
# anatomy and view words); SOPInstanceUID and StudyInstanceUID are read only to be hashed with the salt.
SETTABLE = {"AE", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
UID_ROOT = "1.2.826.0.1.3680043.10.543.77"
AGE = "053Y"  # (not an example the code itself shows)
FILES, BURNED_IN = 5, 2  # plus BURNED_IN files flagged BurnedInAnnotation=YES


def attributes() -> list[tuple[str, str]]:
    """(keyword, VR) of every Annex E attribute pydicom knows with a VR a marker can take."""
    chosen = []
    for keyword in ANNEX_E:
        tag = tag_for_keyword(keyword)
        if tag is None or tag >> 16 in (0, 2) or keyword in ("PatientSex", "PatientAge"):
            continue  # command and meta elements are not a dataset's; sex and age are kept, coarsened
        if dictionary_VR(tag) in SETTABLE:
            chosen.append((keyword, dictionary_VR(tag)))
    return chosen


def marker(position: int, vr: str, number: int, study: int) -> str:
    """A value valid for `vr`, unique to this attribute and file, that cannot occur by chance."""
    if vr == "UI":
        return f"{UID_ROOT}.{position}.{study if position == STUDY_POSITION else number}"
    if vr == "DA":
        return f"{1801 + position:04d}{number % 12 + 1:02d}17"
    if vr == "TM":
        return f"{position % 24:02d}{number:02d}17.{position:03d}{number:03d}"
    if vr == "DT":
        return f"{1801 + position:04d}0{number + 1}17{position % 24:02d}1717.{position:03d}{number:03d}"
    if vr in ("DS", "IS"):
        return f"7{position:03d}{number}{'.5' if vr == 'DS' else ''}"
    if vr == "UR":
        return f"http://zqx{position:03d}{number}.example/"
    if vr == "PN":
        return f"ZQX{position:03d}{number}^PHI"
    if position in DESCRIPTIONS:
        return f"ZQX{position:03d}{number} Chest PA"  # anatomy words survive the scrub, the marker does not
    return f"ZQX{position:03d}{number}"


ATTRIBUTES = attributes()
STUDY_POSITION = next(i for i, (keyword, _) in enumerate(ATTRIBUTES) if keyword == "StudyInstanceUID")
DESCRIPTIONS = {i for i, (keyword, _) in enumerate(ATTRIBUTES) if keyword in ("StudyDescription", "SeriesDescription")}


def markers() -> set[str]:
    """Every value written, as searched for: text markers by their "zqx" prefix (any case), the rest whole."""
    found = {"zqx", UID_ROOT, AGE}
    for number in range(FILES + BURNED_IN + 1):
        for position, (_, vr) in enumerate(ATTRIBUTES):
            if vr in ("DA", "TM", "DT", "DS", "IS"):
                value = marker(position, vr, number, 0)
                found.add(value)
                if vr == "DA":
                    found.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
    return found


def write_file(path: Path, number: int, study: int, **tags) -> Path:
    values = {keyword: marker(position, vr, number, study) for position, (keyword, vr) in enumerate(ATTRIBUTES)}
    for keyword in ("OtherPatientIDs", "FailedSOPInstanceUIDList"):  # multi-valued: two markers
        if keyword in values:
            values[keyword] = [values[keyword], values[keyword] + (".9" if keyword.endswith("List") else "9")]
    return write_dicom(path, picture(number), PatientSex="F", PatientAge=AGE, **values, **tags)


@pytest.fixture(scope="module")
def phi_archive(tmp_path_factory) -> Path:
    """An export named as PACS exports often are (the patient's name and the UIDs in its paths)."""
    root = tmp_path_factory.mktemp("phi") / "export"
    for number in range(FILES + BURNED_IN):
        study = number % 2
        folder = root / f"ZQX999{study}^PHI" / f"{UID_ROOT}.999.{study}"
        name = f"{UID_ROOT}.998.{number}" + (".dcm" if number % 3 else "")
        write_file(folder / name, number, study, **({"BurnedInAnnotation": "YES"} if number >= FILES else {}))
    return root


def test_the_files_really_carry_the_markers(phi_archive):
    from retrieval import dicom

    assert len(ATTRIBUTES) >= 150  # the profile's attributes that take a value, not a token sample
    path = next(phi_archive.rglob("*.dcm"))
    import pydicom

    full = pydicom.dcmread(path)
    assert str(full.PatientName).startswith("ZQX") and str(full.InstitutionName).startswith("ZQX")
    assert str(full.StudyDate) in markers() and str(full.SOPInstanceUID).startswith(UID_ROOT)
    assert dicom.read_header(path).get("PatientName") is None  # never parsed: not on the whitelist
    found = leaks(path.read_bytes())
    assert "zqx" in found and UID_ROOT in found and AGE in found and len(found) > 20  # what the search sees


def leaks(text: str | bytes) -> list[str]:
    data = text.lower() if isinstance(text, bytes) else text.lower().encode()
    return sorted(value for value in markers() if value.lower().encode() in data)


def test_no_marker_anywhere(phi_archive, tmp_path, fake_models, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    index, space = tmp_path / "index", tmp_path / "space"
    arguments = ["build", "--collection", str(phi_archive), "--index", str(index), "--models", "brightness,keywords"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(arguments) == 0
        printed = "".join(capfd.readouterr())
        assert cli.main([*arguments, "--force", "--json"]) == 0
        out = capfd.readouterr()
        report = json.loads(out.out)
        assert report["rows"] == FILES and report["skipped_objects"] == {"burned-in": BURNED_IN}
        engine = SearchEngine(index)
        answers = api_answers(engine, next(phi_archive.rglob("*.dcm")))
        item = engine.catalogue.ids[0]
        assert cli.main(["search", "--index", str(index), "--text", "chest", "--model", "keywords"]) == 0
        assert cli.main(["search", "--index", str(index), "--study", item, "--json"]) == 0
        assert cli.main(["publish", "--index", str(index), "--out", str(space), "--licenses", "all"]) == 0
    printed += out.out + out.err + "".join(capfd.readouterr())
    assert "burned" in printed.lower()  # the CLI says how many were left out, and why
    assert "50-59" in answers  # the age band is there; the age is not
    assert leaks(printed) == []
    assert leaks("\n".join(record.getMessage() for record in caplog.records)) == []
    assert leaks("\n".join(str(warning.message) for warning in caught)) == []
    assert leaks(answers) == []
    records = [engine.catalogue.record(i) for i in engine.catalogue.ids]
    assert {r["caption"] for r in records} == {"chest pa"} and {r["sex"] for r in records} == {"F"}
    for item in engine.catalogue.ids:
        assert leaks(engine.catalogue.thumbnail_jpeg(item)) == [] and leaks(engine.catalogue.stored_bytes(item)) == []
    salt = IndexFolder(index).salt().hex()
    for folder in (index, space):
        files = [path for path in folder.rglob("*") if path.is_file()]
        assert len(files) > 5
        offenders = {str(path.relative_to(folder)): leaks(path.read_bytes()) for path in files}
        assert {name: found for name, found in offenders.items() if found} == {}
        assert [path for path in files if path.name.lower().startswith("zqx") or UID_ROOT in str(path)] == []
    published = [path for path in space.rglob("*") if path.is_file()]
    assert not [path for path in published if salt.encode() in path.read_bytes()]  # the salt stays home


def api_answers(engine, upload: Path) -> str:
    """What the app answers (its handlers, as the API and the page call them), as one text."""
    import app
    from ui import render
    from ui.texts import header_markdown

    handlers = app.Handlers(engine)
    answers = [handlers.search_text("chest radiograph", model="keywords"),
               handlers.search_image(str(upload), model="brightness"),  # an upload full of markers
               handlers.models()]
    item = answers[0][1][0]["id"]
    answers += [handlers.similar(item, model="brightness"), handlers.study(item),
                handlers.refine("chest", [item], [], model="keywords")]
    stats = engine.catalogue.collection_stats()
    skipped = engine.generation.manifest.skipped_objects
    answers += [render.collection_markdown(stats), render.archive_markdown(stats["fields"], skipped),
                header_markdown(len(engine.catalogue), engine.catalogue.categories, True, sum(skipped.values()))]
    answers += [render.details_markdown(engine.catalogue.record(i)) for i in engine.catalogue.ids]
    answers += [render.caption(hit) for hit in engine.search_text("chest", model="keywords", k=FILES)]
    gallery_files = [Path(path).read_bytes() for answer in answers[:1] for path, _ in answer[0]]
    assert gallery_files and not any(leaks(data) for data in gallery_files)
    return json.dumps(answers, default=str)
