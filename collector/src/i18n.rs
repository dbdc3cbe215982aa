//! What people read, in English and Russian: the message catalogue, readable sentences for check
//! and reason identifiers and raw OS errors, and numbers, dates, percentages and durations per
//! language.
//!
//! ## Adding a translated message
//!
//! 1. One line in the `messages!` table below: `Key => "English {0}", "Русский {0}";`. Both
//!    languages are required by the macro's syntax, and a unit test fails when a text is empty,
//!    left untranslated or uses other `{n}` placeholders than its English twin.
//! 2. Where the page is written, with a [`Page`] `p` (its language and time zone):
//!    `p.t(Msg::Key)` or `p.f(Msg::Key, &[&value])`. Catalogue texts never contain HTML
//!    characters (tested); escape the arguments with `report::html_escape`.
//! 3. Figures through `p.time`, `p.duration`, `p.percent`, `p.number`, `p.integer`; identifiers
//!    through `p.check`, `p.reason`, `p.signal`, `p.severity`, `p.status`, `p.error`. A check or
//!    reason missing from the tables is shown as its identifier: add a line to `CHECKS` or
//!    `REASONS` with the new check.
//!
//! Identifiers in CSV and JSON never change with the language; only HTML is translated.

use serde::Serialize;

/// A language of the pages and the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English (the default).
    #[default]
    En,
    /// Russian.
    Ru,
}

impl Lang {
    /// Every language.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ru];

    /// The code used in the config, in `lang=` and in `<html lang>`.
    pub const fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    /// Parses a code (`en`, `ru`).
    ///
    /// # Errors
    /// A message naming the value and the accepted ones.
    pub fn parse(code: &str) -> Result<Lang, String> {
        match code {
            "en" => Ok(Lang::En),
            "ru" => Ok(Lang::Ru),
            other => Err(format!("{other:?}: expected \"en\" or \"ru\"")),
        }
    }
}

macro_rules! messages {
    ($($key:ident => $en:literal, $ru:literal;)*) => {
        /// A message key; its English text is its documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Msg {
            $(#[doc = $en] $key,)*
        }

        impl Msg {
            /// Every key.
            pub const ALL: &'static [Msg] = &[$(Msg::$key,)*];

            /// The text in `lang`.
            pub const fn text(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((Msg::$key, Lang::En) => $en, (Msg::$key, Lang::Ru) => $ru,)*
                }
            }
        }
    };
}

messages! {
    ReportTitle => "SLA report, {0}", "Отчёт SLA за {0}";
    Period => "Period from {0} to {1}.", "Период с {0} по {1}.";
    TimesIn => "Times are in the {0} time zone.", "Время указано в часовом поясе {0}.";
    AvailabilityRule => "Availability = up / (up + down), time-weighted; time without data (unknown) and maintenance are shown but not counted.", "Доступность = работа / (работа + простой) по времени; время без данных (нет данных) и обслуживание показаны, но не учитываются.";
    ServiceHours => "Only service hours are counted.", "Учитываются только часы обслуживания.";
    Host => "Host", "Сервер";
    Signal => "Measured by", "Чем измерено";
    Availability => "Availability", "Доступность";
    Target => "Target", "Цель";
    Met => "Met", "Выполнено";
    Yes => "yes", "да";
    No => "no", "нет";
    NoData => "no data", "нет данных";
    Downtime => "Downtime", "Простой";
    Up => "Up", "Работа";
    Unknown => "No data", "Нет данных";
    Maintenance => "Maintenance", "Обслуживание";
    DowntimeBudget => "Downtime budget left", "Остаток допустимого простоя";
    BudgetLeft => "{0} of {1} left", "осталось {0} из {1}";
    BudgetExceeded => "exceeded by {0} (allowed {1})", "превышен на {0} (допустимо {1})";
    BudgetNote => "The downtime budget is the downtime the counted up time allows at the target; it grows as the month goes on.", "Допустимый простой — простой, при котором доступность ещё равна цели при учтённом времени работы; он растёт в течение месяца.";
    IncidentsBySeverity => "Incidents (critical/high/medium/low)", "Инциденты (критич./высок./средн./низк.)";
    CriticalLogLines => "Critical log lines", "Критических строк в журналах";
    MonitoredSince => "monitored since {0}", "наблюдается с {0}";
    MonitoredFromTo => "Monitored from {0} to {1}; judged on: {2}.", "Наблюдение с {0} по {1}; оценка по: {2}.";
    Revoked => "Revoked {0}.", "Отключён {0}.";
    Signals => "Signals", "Сигналы";
    Incidents => "Incidents", "Инциденты";
    NoIncidents => "None.", "Нет.";
    Severity => "Priority", "Приоритет";
    Check => "Check", "Проверка";
    CheckTarget => "Object", "Объект";
    Reason => "Reason", "Причина";
    Start => "Start", "Начало";
    End => "End", "Конец";
    Duration => "Duration", "Длительность";
    InPeriod => "In this period", "В этом периоде";
    Reaction => "Reaction", "Реакция";
    Open => "open", "продолжается";
    NotAcknowledged => "not acknowledged", "не подтверждён";
    ReactionByPriority => "Reaction by priority", "Время реакции по приоритетам";
    Count => "Incidents", "Инцидентов";
    Acknowledged => "Acknowledged", "Подтверждено";
    MeanReaction => "Average reaction", "Среднее время реакции";
    WorstReaction => "Worst reaction", "Худшее время реакции";
    Checks => "Preventive checks (latest)", "Профилактические проверки (последние результаты)";
    NoChecks => "No check results.", "Нет результатов проверок.";
    Status => "Status", "Состояние";
    Message => "Message", "Сообщение";
    Since => "Since", "С";
    Generated => "Generated {0} by b24watch.", "Сформирован {0} системой b24watch.";
    StatusTitle => "b24watch status", "Состояние b24watch";
    State => "State", "Состояние";
    LastSeen => "Last data", "Последние данные";
    Never => "never", "никогда";
    Day1 => "1 day", "1 день";
    Days7 => "7 days", "7 дней";
    Days30 => "30 days", "30 дней";
    ThisMonth => "This month", "Этот месяц";
    OpenIncidents => "Open incidents", "Открытые инциденты";
    NoneOpen => "none", "нет";
    Reporting => "up", "на связи";
    NotReporting => "not reporting", "нет связи";
    Updated => "Updated {0}.", "Обновлено {0}.";
    MonthlyReport => "Monthly SLA report", "Ежемесячный отчёт SLA";
    SignedInAs => "Signed in as {0} ({1}).", "Вы вошли как {0} ({1}).";
    SignIn => "Sign in", "Войти";
    SignInToAct => "Operators sign in to acknowledge incidents and declare maintenance here.", "Операторы входят, чтобы подтверждать инциденты и объявлять обслуживание на этой странице.";
    NeedsOperator => "Acknowledging incidents and declaring maintenance need the operator role.", "Для подтверждения инцидентов и объявления обслуживания нужна роль оператора.";
    Acknowledge => "Acknowledge", "Подтвердить";
    AcknowledgedBy => "acknowledged by {0}, {1}", "подтверждён: {0}, {1}";
    By => "By", "Кто";
    DeclareMaintenance => "Declare maintenance", "Объявить обслуживание";
    AllHosts => "all hosts", "все серверы";
    From => "From", "С";
    To => "To", "По";
    ComingMaintenance => "Maintenance windows, current and coming", "Окна обслуживания, текущие и предстоящие";
    DoneAcknowledged => "Incident {0} acknowledged.", "Инцидент {0} подтверждён.";
    DoneMaintenance => "Maintenance window {0} declared.", "Окно обслуживания {0} объявлено.";
    Resolve => "Resolve", "Закрыть";
    DoneResolved => "Incident {0} resolved.", "Инцидент {0} закрыт.";
    NotDone => "Not done", "Не выполнено";
    BackToStatus => "Back to the status page", "Вернуться на страницу состояния";
    LinkClient => "Client: {0}. This page and its reports show this client's servers only; it is read-only.", "Клиент: {0}. Эта страница и её отчёты показывают только серверы этого клиента; изменить здесь ничего нельзя.";
    ColoursNote => "Percentages are green at or above the host's target, red below it.", "Проценты зелёные, если не ниже цели сервера, и красные, если ниже.";
    Resources => "Resources", "Ресурсы";
    ResourcesNote => "From hourly averages: average, median and 95th percentile (nearest rank) of the hours with data.", "По средним за час: среднее, медиана и 95-й процентиль (ближайший ранг) часов с данными.";
    NoResources => "No resource data in this period.", "Нет данных о ресурсах за этот период.";
    NoDisks => "No disk data in this period.", "Нет данных о дисках за этот период.";
    Resource => "Resource", "Ресурс";
    Average => "Average", "Среднее";
    Median => "Median", "Медиана";
    P95 => "95th percentile", "95-й процентиль";
    HighestHour => "Highest hour", "Максимум за час";
    Hours => "Hours", "Часов";
    CpuBusy => "CPU busy", "Загрузка процессора";
    Load1 => "Load (1 min)", "Нагрузка (1 мин)";
    MemoryUsed => "Memory used", "Занято памяти";
    MemoryUsedShare => "Memory used (share)", "Занято памяти (доля)";
    MemorySize => "Memory size", "Объём памяти";
    ResponseTime => "Response time {0}", "Время ответа {0}";
    Mount => "Mount", "Точка монтирования";
    Device => "Device", "Устройство";
    Size => "Size", "Размер";
    UsedAtStart => "Used at start", "Занято в начале";
    UsedAtEnd => "Used at end", "Занято в конце";
    Growth => "Growth", "Рост";
    PerDay => "Per day", "В сутки";
    DaysUntilFull => "Days until full", "Дней до заполнения";
    NotGrowing => "not growing", "не растёт";
    DiskFull => "full", "заполнен";
    TooLittleData => "too little data", "мало данных";
    Figures => "Database and backups this month", "База данных и резервные копии за месяц";
    NoFigures => "No database or backup figures.", "Нет данных о базе данных и резервных копиях.";
    Figure => "Figure", "Показатель";
    Of => "Of", "Чего";
    MonthStart => "Month start", "Начало месяца";
    MonthEnd => "Month end", "Конец месяца";
    Change => "Change", "Изменение";
    Lowest => "Lowest", "Минимум";
    Highest => "Highest", "Максимум";
    DatabaseSize => "Database size", "Размер базы данных";
    NewestBackup => "Newest backup", "Последняя резервная копия";
    NewestBackupSize => "Newest backup size", "Размер последней резервной копии";
    BackupSpace => "Free space for backups", "Свободно места для резервных копий";
    ClientReportTitle => "Report for {0}, {1}", "Отчёт для {0} за {1}";
    Plan => "Plan", "Тариф";
    SupportHoursAre => "Support hours: {0}. Reaction and resolution times are counted in support hours only.", "Часы поддержки: {0}. Время реакции и решения считается только в часы поддержки.";
    ReactionTarget => "Reaction target", "Цель по реакции";
    ResolutionTarget => "Resolution target", "Цель по решению";
    WorstResolution => "Worst resolution", "Худшее время решения";
    ReactionBreaches => "Reaction breaches", "Нарушения по реакции";
    ResolutionBreaches => "Resolution breaches", "Нарушения по решению";
    Resolution => "Resolution", "Решение";
    Breached => "breached", "нарушено";
    MaintenanceWindows => "Maintenance windows", "Окна обслуживания";
    DeclaredIn => "Declared in", "Где объявлено";
    DeclaredBy => "Declared by", "Кем объявлено";
    FleetTitle => "Clients, {0}", "Клиенты за {0}";
    Client => "Client", "Клиент";
    Hosts => "Hosts", "Серверы";
    NotMonitored => "Not monitored in this period: {0}.", "Не наблюдались в этом периоде: {0}.";
}

/// Readable names of checks: `(identifier, English, Russian)`.
pub const CHECKS: &[(&str, &str, &str)] = &[
    ("agent", "Agent reporting", "Связь с агентом"),
    ("portal_probe", "Portal availability", "Доступность портала"),
    ("tls_certificate", "TLS certificate", "Сертификат TLS"),
    ("mysql_up", "MySQL connection", "Подключение к MySQL"),
    ("mysql_connections", "MySQL connections in use", "Занятые подключения MySQL"),
    ("mysql_replication", "MySQL replication", "Репликация MySQL"),
    ("bitrix_cron", "Bitrix agents on cron", "Агенты Битрикс на cron"),
    ("bitrix_agents_stuck", "Stuck Bitrix agents", "Зависшие агенты Битрикс"),
    ("bitrix_agents_disabled", "Auto-disabled Bitrix agents", "Автоматически отключённые агенты Битрикс"),
    ("bitrix_agents_failing", "Failing Bitrix agents", "Агенты Битрикс с ошибками"),
    ("bitrix_mail_queue", "Bitrix mail queue", "Очередь почты Битрикс"),
    ("bitrix_site_checker", "Bitrix site checker", "Проверка сайта Битрикс"),
    ("bitrix_db_config", "Bitrix database settings", "Настройки базы данных Битрикс"),
    ("bitrix_agents_overdue", "Overdue Bitrix agents", "Просроченные агенты Битрикс"),
    ("bitrix_mail_failed", "Failed Bitrix mail", "Неотправленные письма Битрикс"),
    ("bitrix_db", "Bitrix database", "База данных Битрикс"),
    ("bitrix_core_age", "Bitrix platform updates", "Обновления платформы Битрикс"),
    ("backup_age", "Newest backup", "Последняя резервная копия"),
    ("backup_size", "Backup size", "Размер резервной копии"),
    ("backup_space", "Space for backups", "Место для резервных копий"),
    ("db_engine", "Table engines", "Типы таблиц"),
    ("db_reclaimable", "Reclaimable table space", "Неиспользуемое место в таблицах"),
    ("db_log_tables", "Log table size", "Размер журнальных таблиц"),
    ("mysql_version", "MySQL version", "Версия MySQL"),
    ("php_version", "PHP version", "Версия PHP"),
    ("web_workers", "Web workers", "Веб-обработчики"),
    ("push_server", "Push server", "Push-сервер"),
    ("service", "System service", "Системная служба"),
];

/// Readable sentences for reasons: `(identifier, English, Russian)`.
pub const REASONS: &[(&str, &str, &str)] = &[
    ("silent", "the agent sent nothing for longer than allowed", "агент не присылал данные дольше допустимого"),
    ("http_status", "the portal answered with an HTTP error status", "портал ответил кодом ошибки HTTP"),
    ("timeout", "no answer in time", "нет ответа за отведённое время"),
    ("down", "not reachable", "недоступен"),
    ("tls_invalid", "the TLS certificate was refused", "сертификат TLS не принят"),
    ("keyword_missing", "the page lacks the expected text", "на странице нет ожидаемого текста"),
    ("expired", "the certificate has expired", "срок действия сертификата истёк"),
    ("expiring", "the certificate expires soon", "срок действия сертификата скоро истекает"),
    ("error", "the check could not run", "проверку не удалось выполнить"),
    ("auth_failed", "the login was refused", "вход отклонён"),
    ("access_denied", "not enough privileges", "недостаточно прав"),
    ("too_many_connections", "too many connections", "слишком много подключений"),
    ("no_credentials", "no login configured or readable", "учётные данные не заданы или не читаются"),
    ("near_limit", "close to the connection limit", "близко к пределу подключений"),
    ("replication_stopped", "replication has stopped", "репликация остановлена"),
    ("replication_lag", "the replica is behind", "реплика отстаёт"),
    ("config_drift", "settings differ from the recommended ones", "настройки отличаются от рекомендуемых"),
    ("overdue", "agents are overdue", "агенты просрочены"),
    ("cron_stopped", "cron does not run the agents", "cron не запускает агенты"),
    ("stuck", "agents are stuck", "агенты зависли"),
    ("auto_disabled", "agents were disabled automatically", "агенты отключены автоматически"),
    ("retrying", "agents keep failing and retrying", "агенты повторяются с ошибками"),
    ("backlog", "messages are piling up", "сообщения накапливаются"),
    ("send_failures", "messages fail to send", "сообщения не отправляются"),
    ("site_checker_failed", "the site checker reports errors", "проверка сайта сообщает об ошибках"),
    ("not_running", "the service is not running", "служба не запущена"),
    ("stale", "the newest backup is too old", "последняя резервная копия слишком старая"),
    ("missing", "backups are scheduled but none was written", "резервное копирование настроено, но копий нет"),
    ("not_configured", "no backup is configured", "резервное копирование не настроено"),
    (
        "shrunk",
        "the newest backup is much smaller than the one before",
        "последняя резервная копия намного меньше предыдущей",
    ),
    ("no_room", "not enough free space for one more backup", "не хватает места для ещё одной резервной копии"),
    ("not_innodb", "tables use another engine than InnoDB", "таблицы используют не InnoDB"),
    ("reclaimable", "tables hold much unused space", "в таблицах много неиспользуемого места"),
    ("log_table_large", "a log table has grown large", "журнальная таблица разрослась"),
    ("outdated", "the platform has not been updated for long", "платформа давно не обновлялась"),
    ("unsupported", "a version Bitrix no longer supports", "версия, которую Битрикс больше не поддерживает"),
    ("saturated", "all workers are busy", "все обработчики заняты"),
    ("refused", "connections are refused", "подключения отклоняются"),
];

/// Raw errors (OS, TLS, DNS, MySQL) as sentences: `(fragments, English, Russian)`; the first
/// entry with a fragment found in the raw text wins.
pub const ERRORS: &[(&[&str], &str, &str)] = &[
    (
        &["Connection refused", "os error 111"],
        "the server refused the connection (nothing listens on the port)",
        "сервер отклонил подключение (порт никто не слушает)",
    ),
    (&["Connection reset", "os error 104"], "the server dropped the connection", "сервер оборвал подключение"),
    (&["No route to host", "os error 113"], "no network route to the server", "нет сетевого маршрута до сервера"),
    (&["Network is unreachable", "os error 101"], "the network is unreachable", "сеть недоступна"),
    (
        &["failed to lookup address", "Name or service not known", "dns error", "Temporary failure in name resolution"],
        "the server's name could not be resolved (DNS)",
        "не удалось определить адрес сервера по имени (DNS)",
    ),
    (&["timed out", "os error 110", "no answer within"], "no answer in time", "нет ответа за отведённое время"),
    (
        &["certificate: Expired", "CertExpired", "certificate has expired"],
        "the certificate has expired",
        "срок действия сертификата истёк",
    ),
    (
        &["UnknownIssuer", "unknown issuer"],
        "the certificate is not trusted (unknown issuer)",
        "сертификат не заслуживает доверия (неизвестный издатель)",
    ),
    (&["NotValidForName"], "the certificate is for another name", "сертификат выдан на другое имя"),
    (&["Access denied for user"], "MySQL refused the login", "MySQL отклонил вход"),
    (&["Too many connections"], "MySQL has too many connections", "у MySQL слишком много подключений"),
    (&["Permission denied", "os error 13"], "permission denied", "доступ запрещён"),
    (&["No such file or directory", "os error 2"], "a file or socket was not found", "файл или сокет не найден"),
];

fn lookup(table: &[(&str, &'static str, &'static str)], id: &str, lang: Lang) -> Option<&'static str> {
    table.iter().find(|(key, _, _)| *key == id).map(|(_, en, ru)| match lang {
        Lang::En => *en,
        Lang::Ru => *ru,
    })
}

/// Substitutes `{0}`, `{1}`, ... in `template` with `args`.
pub fn fill(template: &str, args: &[&dyn std::fmt::Display]) -> String {
    let mut out = template.to_owned();
    for (idx, arg) in args.iter().enumerate() {
        out = out.replace(&format!("{{{idx}}}"), &arg.to_string());
    }
    out
}

/// `value` with `decimals` decimals, thousands grouped: `1,234.5` (en), `1 234,5` (ru, with
/// no-break spaces).
pub fn number(lang: Lang, value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text.split_once('.').map_or((text.as_str(), ""), |(i, f)| (i, f));
    let (group, point) = match lang {
        Lang::En => (",", "."),
        Lang::Ru => ("\u{a0}", ","),
    };
    let mut out = String::new();
    if value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.push('-');
    }
    for (idx, c) in int.chars().enumerate() {
        if idx > 0 && (int.len() - idx).is_multiple_of(3) {
            out.push_str(group);
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push_str(point);
        out.push_str(frac);
    }
    out
}

/// A ratio as a percentage with three decimals, rounded *down* (a printed figure never reaches a
/// target the exact figure misses): `99.499 %` (en), `99,499 %` (ru).
pub fn percent(lang: Lang, ratio: Option<f64>) -> String {
    ratio.map_or_else(
        || Msg::NoData.text(lang).to_owned(),
        |r| {
            let thousandths = (r * 100_000.0 + 1e-9).floor();
            format!("{}\u{a0}%", number(lang, thousandths / 1000.0, 3))
        },
    )
}

/// A duration in whole seconds: `1d 2h 3m 4s` (en), `1 д 2 ч 3 мин 4 с` (ru).
pub fn duration(lang: Lang, ms: i64) -> String {
    let negative = ms < 0;
    let s = ms.unsigned_abs() / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let units: [&str; 4] = match lang {
        Lang::En => ["d", "h", "m", "s"],
        Lang::Ru => ["\u{a0}д", "\u{a0}ч", "\u{a0}мин", "\u{a0}с"],
    };
    let parts = [(d, units[0]), (h, units[1]), (m, units[2]), (sec, units[3])];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    let text = parts[first..].iter().map(|(n, unit)| format!("{n}{unit}")).collect::<Vec<_>>().join(" ");
    if negative { format!("-{text}") } else { text }
}

/// A time in `tz` with the zone named: `2026-03-29 03:00:00 CEST` (en), `29.03.2026 03:00:00 CEST`
/// (ru).
pub fn datetime(lang: Lang, ms: i64, tz: &jiff::tz::TimeZone) -> String {
    let pattern = match lang {
        Lang::En => "%Y-%m-%d %H:%M:%S %Z",
        Lang::Ru => "%d.%m.%Y %H:%M:%S %Z",
    };
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.to_zoned(tz.clone()).strftime(pattern).to_string())
}

/// ISO 8601 with the offset of `tz`, for machines: `2026-03-29T03:00:00+02:00`.
pub fn iso(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
}

const MONTHS: [(&str, &str); 12] = [
    ("January", "январь"),
    ("February", "февраль"),
    ("March", "март"),
    ("April", "апрель"),
    ("May", "май"),
    ("June", "июнь"),
    ("July", "июль"),
    ("August", "август"),
    ("September", "сентябрь"),
    ("October", "октябрь"),
    ("November", "ноябрь"),
    ("December", "декабрь"),
];

/// `YYYY-MM` as words: `March 2026` (en), `март 2026` (ru); other text as it is.
pub fn month(lang: Lang, month: &str) -> String {
    let parsed = month.split_once('-').and_then(|(y, m)| Some((y.parse::<u32>().ok()?, m.parse::<usize>().ok()?)));
    match parsed {
        Some((year, m @ 1..=12)) => {
            let (en, ru) = MONTHS[m - 1];
            format!("{} {year}", if lang == Lang::En { en } else { ru })
        }
        _ => month.to_owned(),
    }
}

/// The language and time zone a page is written in, and the formatting that follows from them.
#[derive(Debug, Clone)]
pub struct Page {
    /// Language.
    pub lang: Lang,
    /// Time zone of every time printed.
    pub tz: jiff::tz::TimeZone,
}

impl Page {
    /// A page in `lang` with times in `tz`.
    pub fn new(lang: Lang, tz: jiff::tz::TimeZone) -> Self {
        Page { lang, tz }
    }

    /// A message.
    pub fn t(&self, msg: Msg) -> &'static str {
        msg.text(self.lang)
    }

    /// A message with its `{n}` placeholders filled.
    pub fn f(&self, msg: Msg, args: &[&dyn std::fmt::Display]) -> String {
        fill(msg.text(self.lang), args)
    }

    /// A time in the page's zone, the zone named.
    pub fn time(&self, ms: i64) -> String {
        datetime(self.lang, ms, &self.tz)
    }

    /// A duration.
    pub fn duration(&self, ms: i64) -> String {
        duration(self.lang, ms)
    }

    /// A ratio as a percentage (rounded down).
    pub fn percent(&self, ratio: Option<f64>) -> String {
        percent(self.lang, ratio)
    }

    /// A number with `decimals` decimals.
    pub fn number(&self, value: f64, decimals: usize) -> String {
        number(self.lang, value, decimals)
    }

    /// An integer, thousands grouped.
    pub fn integer(&self, value: i64) -> String {
        number(self.lang, value as f64, 0)
    }

    /// The readable name of a check identifier (the identifier itself when unknown).
    pub fn check(&self, id: &str) -> String {
        lookup(CHECKS, id, self.lang).map_or_else(|| id.to_owned(), str::to_owned)
    }

    /// The readable sentence of a reason identifier (the identifier itself when unknown).
    pub fn reason(&self, id: &str) -> String {
        lookup(REASONS, id, self.lang).map_or_else(|| id.to_owned(), str::to_owned)
    }

    /// A sentence for a raw error text, when one of [`ERRORS`] matches it.
    pub fn error(&self, raw: &str) -> Option<&'static str> {
        ERRORS.iter().find(|(fragments, _, _)| fragments.iter().any(|f| raw.contains(f))).map(|(_, en, ru)| match self
            .lang
        {
            Lang::En => *en,
            Lang::Ru => *ru,
        })
    }

    /// What a signal measures: `Portal availability (https://…)`, `Agent reporting`, `MySQL connection`.
    pub fn signal(&self, signal: &str, target: &str) -> String {
        let name = match signal {
            "portal" => self.check("portal_probe"),
            "mysql" => self.check("mysql_up"),
            other => self.check(other),
        };
        if target.is_empty() { name } else { format!("{name} ({target})") }
    }

    /// Whether a target is met: yes, no, or no data when nothing was counted.
    pub fn met(&self, met: Option<bool>) -> &'static str {
        self.t(match met {
            Some(true) => Msg::Yes,
            Some(false) => Msg::No,
            None => Msg::NoData,
        })
    }

    /// A severity name.
    pub fn severity(&self, severity: &str) -> &'static str {
        let [en, ru] = match severity {
            "critical" => ["critical", "критический"],
            "high" => ["high", "высокий"],
            "medium" => ["medium", "средний"],
            "low" => ["low", "низкий"],
            _ => ["unknown", "неизвестный"],
        };
        if self.lang == Lang::En { en } else { ru }
    }

    /// A check status (`ok`, `failed`, `error`).
    pub fn status(&self, status: &str) -> &'static str {
        let [en, ru] = match status {
            "ok" => ["OK", "в порядке"],
            "failed" => ["failing", "сбой"],
            _ => ["could not run", "не удалось выполнить"],
        };
        if self.lang == Lang::En { en } else { ru }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(text: &str) -> Vec<String> {
        let mut found: Vec<String> = (0..10).map(|n| format!("{{{n}}}")).filter(|p| text.contains(p)).collect();
        found.sort();
        found
    }

    fn cyrillic(text: &str) -> bool {
        text.chars().any(|c| ('\u{400}'..='\u{4ff}').contains(&c))
    }

    /// Every key has a text in every language, translated, with the same placeholders, and no
    /// character HTML would read as markup.
    #[test]
    fn every_message_has_both_languages_with_the_same_placeholders() {
        let mut texts: Vec<(String, &str, &str)> =
            Msg::ALL.iter().map(|m| (format!("{m:?}"), m.text(Lang::En), m.text(Lang::Ru))).collect();
        for table in [CHECKS, REASONS] {
            texts.extend(table.iter().map(|(id, en, ru)| ((*id).to_owned(), *en, *ru)));
        }
        texts.extend(ERRORS.iter().map(|(f, en, ru)| (f[0].to_owned(), *en, *ru)));
        for (key, en, ru) in texts {
            assert!(!en.trim().is_empty() && !ru.trim().is_empty(), "{key}: a language is missing");
            assert!(!cyrillic(en), "{key}: the English text is Russian: {en}");
            assert!(cyrillic(ru), "{key}: the Russian text is not translated: {ru}");
            assert_eq!(placeholders(en), placeholders(ru), "{key}: placeholders differ");
            for text in [en, ru] {
                assert!(!text.contains(['<', '>', '&', '"']), "{key}: HTML characters in {text:?}");
            }
        }
    }

    #[test]
    fn identifiers_appear_once_per_table() {
        for table in [CHECKS, REASONS] {
            let mut ids: Vec<&str> = table.iter().map(|(id, _, _)| *id).collect();
            ids.sort_unstable();
            let n_ids = ids.len();
            ids.dedup();
            assert_eq!(ids.len(), n_ids, "duplicate identifiers");
        }
    }

    #[test]
    fn numbers_and_percentages_follow_the_language() {
        assert_eq!(number(Lang::En, 1_234_567.891, 2), "1,234,567.89");
        assert_eq!(number(Lang::Ru, 1_234_567.891, 2), "1\u{a0}234\u{a0}567,89");
        assert_eq!(number(Lang::En, -1_000.0, 0), "-1,000");
        assert_eq!(number(Lang::Ru, 999.0, 0), "999");
        assert_eq!(percent(Lang::En, Some(0.994_999_6)), "99.499\u{a0}%");
        assert_eq!(percent(Lang::Ru, Some(0.995)), "99,500\u{a0}%");
        assert_eq!(percent(Lang::Ru, Some(1.0)), "100,000\u{a0}%");
        assert_eq!(percent(Lang::Ru, None), "нет данных");
    }

    #[test]
    fn durations_keep_whole_seconds_in_both_languages() {
        let ms = ((2 * 24 + 3) * 3600 + 4 * 60 + 5) * 1000 + 999;
        assert_eq!(duration(Lang::En, ms), "2d 3h 4m 5s");
        assert_eq!(duration(Lang::Ru, ms), "2\u{a0}д 3\u{a0}ч 4\u{a0}мин 5\u{a0}с");
        assert_eq!(duration(Lang::En, 65_000), "1m 5s");
        assert_eq!(duration(Lang::En, 0), "0s");
        assert_eq!(duration(Lang::En, -3_600_000), "-1h 0m 0s");
    }

    /// Berlin changed to summer time at 2026-03-29 01:00 UTC: the zone's name changes with it.
    #[test]
    fn times_name_the_zone_on_both_sides_of_a_dst_change() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").expect("tzdb");
        let switch = jiff::Timestamp::from_second(1_774_746_000).expect("ts").as_millisecond();
        assert_eq!(datetime(Lang::En, switch - 1000, &berlin), "2026-03-29 01:59:59 CET");
        assert_eq!(datetime(Lang::En, switch, &berlin), "2026-03-29 03:00:00 CEST");
        assert_eq!(datetime(Lang::Ru, switch, &berlin), "29.03.2026 03:00:00 CEST");
        assert_eq!(iso(switch - 1000, &berlin), "2026-03-29T01:59:59+01:00");
        assert_eq!(iso(switch, &berlin), "2026-03-29T03:00:00+02:00");
        let moscow = jiff::tz::TimeZone::get("Europe/Moscow").expect("tzdb");
        assert_eq!(datetime(Lang::Ru, switch, &moscow), "29.03.2026 04:00:00 MSK");
    }

    #[test]
    fn identifiers_and_raw_errors_read_as_sentences() {
        let ru = Page::new(Lang::Ru, jiff::tz::TimeZone::UTC);
        let en = Page::new(Lang::En, jiff::tz::TimeZone::UTC);
        assert_eq!(ru.check("portal_probe"), "Доступность портала");
        assert_eq!(en.reason("http_status"), "the portal answered with an HTTP error status");
        assert_eq!(ru.check("a_check_added_later"), "a_check_added_later");
        let raw = "HTTP request: client error (Connect): tcp connect error: Connection refused (os error 111)";
        assert_eq!(en.error(raw), Some("the server refused the connection (nothing listens on the port)"));
        assert_eq!(
            ru.error("dns error: failed to lookup address information"),
            Some("не удалось определить адрес сервера по имени (DNS)")
        );
        assert_eq!(en.error("HTTP 502 in 0.004 s"), None);
        assert_eq!(en.signal("portal", "https://bx.example/"), "Portal availability (https://bx.example/)");
        assert_eq!(ru.signal("agent", ""), "Связь с агентом");
        assert_eq!(month(Lang::Ru, "2026-03"), "март 2026");
        assert_eq!(month(Lang::En, "2026-11"), "November 2026");
        assert_eq!(Lang::parse("de"), Err("\"de\": expected \"en\" or \"ru\"".to_owned()));
    }
}
