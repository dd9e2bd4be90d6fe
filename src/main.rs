fn main() {
    print!("{}", kaizen::api::crds_yaml().expect("CRDs serialize"));
}
