use cbreg::{Arg, Registry, Value};

fn main() -> Result<(), cbreg::Status> {
    let reg = Registry::global();
    let sub = reg.register(|args: &[Arg], ret: &mut Value| {
        let name = args[1].as_str().unwrap_or("?"); // borrowed for the call: no unsafe
        println!("{name}");
        *ret = Value::f64(args[0].as_f64().unwrap_or(0.0) * 2.0);
        Ok(())
    })?;
    let args = [Arg::f64(220.0), Arg::str("A3")];
    assert_eq!(reg.invoke(sub.id(), &args)?.as_f64(), Some(440.0));
    let site = reg.site(sub.id())?; // a call site, for a hot loop
    site.call(&args);
    drop(sub); // unregisters
    Ok(())
}
