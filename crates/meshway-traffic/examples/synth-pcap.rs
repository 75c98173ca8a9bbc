//! Writes a synthetic capture for the traffic benchmark:
//! `cargo run --release -p meshway-traffic --example synth-pcap -- OUT.pcap PACKETS [GPUS] [FLOWS] [SNAPLEN]`

fn main() -> std::io::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        eprintln!("usage: synth-pcap OUT.pcap PACKETS [GPUS] [FLOWS] [SNAPLEN]");
        std::process::exit(2);
    }
    let packets: u64 = a[2].parse().map_err(std::io::Error::other)?;
    let gpus: u32 = a.get(3).map_or(Ok(64), |s| s.parse()).map_err(std::io::Error::other)?;
    let flows: u32 = a.get(4).map_or(Ok(1000), |s| s.parse()).map_err(std::io::Error::other)?;
    let snaplen: usize = a.get(5).map_or(Ok(65_535), |s| s.parse()).map_err(std::io::Error::other)?;
    let f = std::fs::File::create(&a[1])?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let bytes = meshway_traffic::synth::gpu_traffic(&mut w, gpus, flows, packets, 7, snaplen)?;
    std::io::Write::flush(&mut w)?;
    eprintln!("wrote {} ({bytes} bytes, {packets} packets, {flows} flows among {gpus} GPUs)", a[1]);
    Ok(())
}
