-- A subset of the Bitrix schema: the tables b24watch-agent reads, with their real column types.
-- Used by the test harness (tests/src/mariadb.rs) and scripts/bench-agent.sh.
CREATE TABLE b_agent (
  ID int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  MODULE_ID varchar(50) DEFAULT NULL,
  SORT int NOT NULL DEFAULT 100,
  NAME text,
  ACTIVE char(1) NOT NULL DEFAULT 'Y',
  LAST_EXEC datetime DEFAULT NULL,
  NEXT_EXEC datetime NOT NULL,
  DATE_CHECK datetime DEFAULT NULL,
  AGENT_INTERVAL int DEFAULT 86400,
  IS_PERIOD char(1) DEFAULT 'Y',
  USER_ID int DEFAULT NULL,
  RUNNING char(1) NOT NULL DEFAULT 'N',
  RETRY_COUNT int DEFAULT NULL
);
CREATE TABLE b_event (
  ID int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  EVENT_NAME varchar(255) NOT NULL,
  MESSAGE_ID int DEFAULT NULL,
  LID varchar(255) NOT NULL,
  C_FIELDS longtext,
  DATE_INSERT datetime DEFAULT NULL,
  DATE_EXEC datetime DEFAULT NULL,
  SUCCESS_EXEC char(1) NOT NULL DEFAULT 'N',
  DUPLICATE char(1) NOT NULL DEFAULT 'Y',
  LANGUAGE_ID char(2) DEFAULT NULL
);
CREATE TABLE b_option (
  MODULE_ID varchar(50) NOT NULL,
  NAME varchar(100) NOT NULL,
  VALUE text,
  DESCRIPTION varchar(255) DEFAULT NULL,
  SITE_ID char(2) DEFAULT NULL,
  UNIQUE KEY ix_option (MODULE_ID, NAME, SITE_ID)
);
