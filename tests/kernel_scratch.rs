mod kernel;
use ftpalg::dataplane::kernel::KernelDataPlane;
use kernel::*;
use std::time::Instant;
#[test]
fn scratch() {
    let lab = Lab::new("y");
    in_ns(&lab.gw, || {
        let (mut dp, _) = KernelDataPlane::open(config()).unwrap();
        for _ in 0..3 {
            let t = Instant::now();
            dp.check_table().unwrap();
            eprintln!("check_table {:?}", t.elapsed());
            let t = Instant::now();
            dp.poll().unwrap();
            eprintln!("poll {:?}", t.elapsed());
        }
    });
}
