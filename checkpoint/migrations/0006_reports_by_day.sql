-- The raw-report export reads reports by the day they count on, in (day, report_id) order.

CREATE INDEX reports_day ON reports (day, report_id);
