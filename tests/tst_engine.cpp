#include <QtTest>
class Stub_tst_engine : public QObject { Q_OBJECT private slots: void todo() { QSKIP("not written yet"); } };
QTEST_APPLESS_MAIN(Stub_tst_engine)
#include "tst_engine.moc"
