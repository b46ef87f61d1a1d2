#include <QtTest>
class Stub_tst_golden_stories : public QObject { Q_OBJECT private slots: void todo() { QSKIP("not written yet"); } };
QTEST_APPLESS_MAIN(Stub_tst_golden_stories)
#include "tst_golden_stories.moc"
