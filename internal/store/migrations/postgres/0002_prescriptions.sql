-- 0002_prescriptions: signed prescriptions accepted by ingestion (B-LT CMS and the sealed report).
CREATE TABLE prescriptions (
	id                TEXT   NOT NULL PRIMARY KEY,
	received_us       BIGINT NOT NULL,
	signing_us        BIGINT NOT NULL,
	prescriber_code   TEXT   NOT NULL,
	council_number    TEXT   NOT NULL,
	patient_code      TEXT   NOT NULL,
	indication        TEXT   NOT NULL,
	signature         BYTEA  NOT NULL,
	sealed_report     BYTEA  NOT NULL
);
CREATE INDEX prescriptions_patient ON prescriptions (patient_code, received_us);
CREATE INDEX prescriptions_prescriber ON prescriptions (council_number, received_us);
