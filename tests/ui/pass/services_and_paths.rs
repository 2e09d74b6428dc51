// Events and commands named by path, an aggregate with services and the default error type.
use eventsource::prelude::*;

mod events {
    use eventsource::prelude::*;

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "stock.reserved")]
    pub struct Reserved(pub u32);

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "stock.released")]
    pub struct Released;
}

mod commands {
    #[derive(Clone, Debug)]
    pub struct Reserve(pub u32);
}

struct Warehouse {
    capacity: u32,
}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(
    name = "stock",
    events(events::Reserved, events::Released),
    commands(commands::Reserve),
    services = Warehouse
)]
struct Stock {
    reserved: u32,
}

impl Apply<events::Reserved> for Stock {
    fn apply(&mut self, event: &events::Reserved) {
        self.reserved += event.0;
    }
}

impl Apply<events::Released> for Stock {
    fn apply(&mut self, _: &events::Released) {
        self.reserved = 0;
    }
}

impl HandleWith<commands::Reserve> for Stock {
    fn handle(
        &self,
        command: commands::Reserve,
        warehouse: &Warehouse,
    ) -> Result<Events<Self>, Self::Error> {
        let amount = command.0.min(warehouse.capacity - self.reserved);
        Ok(Events::one(events::Reserved(amount)))
    }
}

fn main() {
    let _: StockEvent = events::Released.into();
    Stock::given([events::Reserved(8)])
        .with_services(Warehouse { capacity: 10 })
        .when(commands::Reserve(5))
        .then([events::Reserved(2)]);
}
